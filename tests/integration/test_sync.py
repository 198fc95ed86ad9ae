"""Whole syncs into a directory target against the real HTTPS list server, real state, real qemu-img."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo.server import Fault
from imagesync.demo.world import LIST_PATH, DemoImage, DemoWorld, demo_images
from imagesync.errors import EXIT_LOCKED, EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from imagesync.run import lock
from imagesync.run.pipeline import sync
from imagesync.state.store import StateStore
from tests.support.runs import kinds


def settings_for(world: DemoWorld, **lists_extra: object) -> config.Settings:
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    if lists_extra:
        data = yaml.safe_load(path.read_text())
        data["lists"]["demo"].update(lists_extra)
        path.write_text(yaml.safe_dump(data))
    return config.load(path)


def archive(world: DemoWorld) -> dict[str, dict[str, object]]:
    """What the directory target holds: active sidecars by relative image path."""
    root = world.root / "archive"
    return {str(p.relative_to(root))[:-5]: json.loads(p.read_text()) for p in sorted(root.glob("demo/*.json"))}


def retired(world: DemoWorld) -> list[str]:
    root = world.root / "archive" / "retired"
    return sorted(str(p.relative_to(root))[:-5] for p in root.glob("demo/*.json"))


def image_hits(world: DemoWorld, images: list[DemoImage]) -> int:
    return sum(world.server.hits(f"/images/{i.identifier}-{i.version}.img") for i in images)


def test_first_sync_then_noop_then_update_and_retire(world: DemoWorld) -> None:
    v1 = demo_images("1.0")
    world.publish(v1)
    settings = settings_for(world)
    first = sync(settings, dry_run=False)
    assert first.exit_code == EXIT_OK, first
    assert kinds(first) == [("add", "demo-alpine", "done"), ("add", "demo-debian", "done")]
    held = archive(world)
    assert sorted(held) == ["demo/demo-alpine-1.0.raw", "demo/demo-debian-1.0.raw"]
    props = held["demo/demo-alpine-1.0.raw"]["properties"]
    assert isinstance(props, dict)
    assert props["imagesync_image_id"] == "demo-alpine" and props["disk_format"] == "raw"
    assert props["ad_vo"] == "demo.vo" and props["imagesync_list"] == "demo"
    assert (world.root / "archive/demo/demo-alpine-1.0.raw").read_bytes() == v1[0].data
    assert first.bytes_downloaded == sum(len(i.data) for i in v1)

    hits = image_hits(world, v1)
    second = sync(settings, dry_run=False)
    assert second.exit_code == EXIT_OK
    assert [o.status for o in second.lists] == ["unchanged"]
    assert world.server.last_headers(LIST_PATH).get("If-None-Match")
    assert kinds(second) == [("keep", "demo-alpine", "done"), ("keep", "demo-debian", "done")]
    assert second.bytes_downloaded == 0 and image_hits(world, v1) == hits

    v2 = [demo_images("2.0")[0]]  # alpine gets a new version, debian is removed
    world.publish(v2)
    third = sync(settings, dry_run=False)
    assert third.exit_code == EXIT_OK, [r.error for r in third.results]
    assert kinds(third) == [("update", "demo-alpine", "done"), ("retire", "demo-debian", "done")]
    assert sorted(archive(world)) == ["demo/demo-alpine-2.0.raw"]
    assert retired(world) == ["demo/demo-alpine-1.0.raw", "demo/demo-debian-1.0.raw"]
    with StateStore.open(settings.state_dir) as store:
        states = sorted((r.identifier, r.version, r.state.value) for r in store.target_images())
    assert states == [("demo-alpine", "1.0", "retired"), ("demo-alpine", "2.0", "active"),
                      ("demo-debian", "1.0", "retired")]


def test_dry_run_changes_nothing(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = settings_for(world)
    result = sync(settings, dry_run=True)
    assert [(r.action.kind, r.status) for r in result.results] == [("add", "planned"), ("add", "planned")]
    assert result.bytes_downloaded == 0
    assert image_hits(world, demo_images()) == 0
    assert not (world.root / "archive").exists()
    assert not settings.state_dir.exists() and not settings.cache_dir.exists()


def test_unreachable_list_retires_nothing(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = settings_for(world)
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    world.server.remove(LIST_PATH)
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_NOTHING_DONE
    assert [o.status for o in result.lists] == ["failed"]
    assert kinds(result) == [("keep", "demo-alpine", "done"), ("keep", "demo-debian", "done")]
    assert len(archive(world)) == 2 and retired(world) == []


def test_tampered_list_retires_nothing(world: DemoWorld) -> None:
    signed = world.publish(demo_images())
    settings = settings_for(world)
    sync(settings, dry_run=False)
    world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
    result = sync(settings, dry_run=False)
    assert result.lists[0].status == "failed" and "tampered" in (result.lists[0].error or "")
    assert len(archive(world)) == 2 and retired(world) == []


@pytest.mark.parametrize(("on_expiry", "expected"), [("retire", "retire"), ("keep", "keep")])
def test_expired_list(world: DemoWorld, on_expiry: str, expected: str) -> None:
    # The list expires 10 s from now: long enough for a first sync on a loaded CI machine.
    expires = datetime.now(UTC) + timedelta(seconds=10)
    world.publish(demo_images(), created=expires - timedelta(days=30))
    settings = settings_for(world, on_expiry=on_expiry)
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.5)
    result = sync(settings, dry_run=False)
    assert "expired" in (result.lists[0].error or "")
    assert {r.action.kind for r in result.results} == {expected}
    assert len(retired(world)) == (2 if expected == "retire" else 0)


def test_corrupted_image_fails_alone(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    world.server.put(f"/images/{images[0].identifier}-1.0.img", images[1].data)  # wrong bytes, listed sha512
    settings = settings_for(world)
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    assert kinds(result) == [("add", "demo-alpine", "failed"), ("add", "demo-debian", "done")]
    assert "checksum mismatch" in (result.results[0].error or "")
    assert sorted(archive(world)) == ["demo/demo-debian-1.0.raw"]
    assert list((settings.cache_dir / "partial").glob("*")) == []
    with StateStore.open(settings.state_dir) as store:
        assert {r.identifier: r.state.value for r in store.target_images()} == {"demo-alpine": "failed",
                                                                                 "demo-debian": "active"}
    world.server.put(f"/images/{images[0].identifier}-1.0.img", images[0].data)
    again = sync(settings, dry_run=False)
    assert again.exit_code == EXIT_OK and kinds(again)[0] == ("add", "demo-alpine", "done")


def test_resume_of_a_half_downloaded_file(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    settings = settings_for(world)
    partial = settings.cache_dir / "partial" / f"{_sha(images[0].data)}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(images[0].data[: len(images[0].data) // 2])
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_OK
    path = f"/images/{images[0].identifier}-1.0.img"
    assert world.server.last_headers(path).get("Range") == f"bytes={len(images[0].data) // 2}-"
    assert (world.root / "archive/demo/demo-alpine-1.0.raw").read_bytes() == images[0].data


def _sha(data: bytes) -> str:
    import hashlib
    return hashlib.sha512(data).hexdigest()


def _cli(config_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "imagesync", "--config", str(config_path), "sync", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_second_run_exits_75_at_once(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = settings_for(world)
    with lock.acquire(settings.state_dir):
        started = time.monotonic()
        proc = _cli(world.root / "imagesync.yaml")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_LOCKED
    assert time.monotonic() - started < 10
    assert "another imagesync run holds" in err and err.count("\n") == 1


def test_sigkill_during_download_then_rerun_converges(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    settings_for(world)
    path = f"/images/{images[0].identifier}-1.0.img"
    world.server.inject(path, Fault.stall(30))
    proc = _cli(world.root / "imagesync.yaml")
    deadline = time.monotonic() + 20
    while world.server.hits(path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    rerun = _cli(world.root / "imagesync.yaml")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == EXIT_OK, out + err
    assert sorted(archive(world)) == ["demo/demo-alpine-1.0.raw", "demo/demo-debian-1.0.raw"]
    final = _cli(world.root / "imagesync.yaml", "--format", "json")
    report = json.loads(final.communicate(timeout=60)[0])
    assert {a["action"] for a in report["actions"]} == {"keep"}


def test_dry_run_on_existing_state_writes_nothing(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = settings_for(world)
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    world.publish(demo_images("2.0"))
    db = settings.state_dir / "state.db"
    before = db.read_bytes()
    result = sync(settings, dry_run=True)
    assert {r.action.kind for r in result.results} == {"update"}
    # A read-only reader may create SQLite's -wal/-shm side files; the database itself must not change.
    assert db.read_bytes() == before
    assert sorted(archive(world)) == ["demo/demo-alpine-1.0.raw", "demo/demo-debian-1.0.raw"]


def test_respun_image_with_same_version_stays_active(world: DemoWorld) -> None:
    alpine = demo_images()[0]
    world.publish([alpine])
    settings = settings_for(world)
    sync(settings, dry_run=False)
    respun = DemoImage(alpine.identifier, alpine.version, alpine.title, alpine.data[::-1])
    world.publish([respun])
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("update", "demo-alpine", "done")]
    assert sorted(archive(world)) == ["demo/demo-alpine-1.0.raw"]
    assert (world.root / "archive/demo/demo-alpine-1.0.raw").read_bytes() == respun.data
    with StateStore.open(settings.state_dir) as store:
        records = sorted((r.sha512 == _sha(respun.data), r.state.value) for r in store.target_images())
    assert records == [(False, "deleted"), (True, "active")]
    assert {r.action.kind for r in sync(settings, dry_run=False).results} == {"keep"}


def test_foreign_files_in_the_target_directory_are_left_alone(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = settings_for(world)
    own = world.root / "archive" / "README.txt"
    other = world.root / "archive" / "other-tool" / "disk.qcow2"
    other.parent.mkdir(parents=True)
    own.write_text("operator notes")
    other.write_bytes(b"not ours")
    sync(settings, dry_run=False)
    sync(settings, dry_run=False)
    assert own.read_text() == "operator notes" and other.read_bytes() == b"not ours"


def test_publisher_goes_back_to_the_previous_version(world: DemoWorld) -> None:
    v1, v2 = demo_images("1.0")[0], demo_images("2.0")[0]
    settings = settings_for(world)
    world.publish([v1])
    sync(settings, dry_run=False)
    world.publish([v2])
    sync(settings, dry_run=False)
    world.publish([v1])
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("update-metadata", "demo-alpine", "done")]
    assert result.results[0].action.reason == "listed again: reactivate"
    assert sorted(archive(world)) == ["demo/demo-alpine-1.0.raw"]
    assert retired(world) == ["demo/demo-alpine-2.0.raw"]
    assert result.bytes_downloaded == 0


def test_list_filter_leaves_other_lists_out_of_the_run(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = settings_for(world)
    sync(settings, dry_run=False)
    data = yaml.safe_load((world.root / "imagesync.yaml").read_text())
    data["lists"]["other"] = {"url": world.server.url("/store/vo/none/image.list")}
    (world.root / "imagesync.yaml").write_text(yaml.safe_dump(data))
    result = sync(config.load(world.root / "imagesync.yaml"), dry_run=True, lists=("other",))
    assert [o.settings.name for o in result.lists] == ["other"]
    assert result.results == [] and result.plan.notes == ()
