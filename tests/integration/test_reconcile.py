"""Every run reconciles the state with what the target really holds, before planning (issue 7, invariant 4).

The crash is real: a subprocess runs the real sync and SIGKILLs itself right after the directory driver has
retired an image (or put one back), before the state could record it. Only the kill is injected.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import yaml

from imagesync.config import settings as config
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import sync
from imagesync.state.store import StateStore

# Runs the real sync, but dies (SIGKILL, nothing flushed) the moment the driver's METHOD has returned.
_DIE_AFTER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from imagesync.config import settings as config
    from imagesync.run import pipeline
    from imagesync.targets.directory import DirectoryDriver
    method = sys.argv[2]
    real = getattr(DirectoryDriver, method)
    def dying(self, *args, **kwargs):
        real(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(DirectoryDriver, method, dying)
    pipeline.sync(config.load(Path(sys.argv[1])), dry_run=False)
""")


def _settings(world: DemoWorld, **retire: object) -> config.Settings:
    target = {"driver": "directory", "path": str(world.root / "archive"), "retire": {"mode": "deactivate", **retire}}
    return config.load(world.write_config({"targets": {"archive": target}}))


def _killed_after(settings: config.Settings, method: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _DIE_AFTER, str(settings.source or ""), method], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _states(settings: config.Settings, identifier: str) -> list[str]:
    with StateStore.open(settings.state_dir) as store:
        return [r.state.value for r in store.target_images(target="archive") if r.identifier == identifier]


def _retired_files(world: DemoWorld) -> list[str]:
    return sorted(p.name for p in (world.root / "archive" / "retired").glob("demo/*.json"))


def test_kill_after_retire_is_reconciled_and_delete_after_counts_from_then(world: DemoWorld) -> None:
    images = demo_images("1.0")
    world.publish(images)
    settings = _settings(world, delete_after="1d")
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    world.publish(images[:1])  # debian leaves the list

    _killed_after(settings, "retire")
    assert _retired_files(world) == ["demo-debian-1.0.raw.json"]  # the target did it ...
    assert _states(settings, "demo-debian") == ["active"]  # ... the state never heard of it

    rerun = sync(settings, dry_run=False)
    assert rerun.exit_code == EXIT_OK
    assert _states(settings, "demo-debian") == ["retired"]
    assert [a.kind for a in rerun.plan.actions if a.identifier == "demo-debian"] == []

    later = datetime.now(UTC) + timedelta(days=1, hours=1)
    deleting = sync(settings, dry_run=False, clock=lambda: later)
    assert [(r.action.kind, r.action.retire_mode, r.status) for r in deleting.results
            if r.action.identifier == "demo-debian"] == [("retire", "delete", "done")]
    assert _retired_files(world) == []
    assert _states(settings, "demo-debian") == ["deleted"]


def test_kill_after_reactivation_is_reconciled(world: DemoWorld) -> None:
    images = demo_images("1.0")
    world.publish(images)
    settings = _settings(world)
    sync(settings, dry_run=False)
    world.publish(images[:1])
    sync(settings, dry_run=False)
    assert _states(settings, "demo-debian") == ["retired"]
    world.publish(images)  # debian is listed again: the run puts the retired copy back

    _killed_after(settings, "update_metadata")
    assert _retired_files(world) == []
    assert _states(settings, "demo-debian") == ["retired"]

    dry = sync(settings, dry_run=True)  # a dry run plans from the reconciled view too, writing nothing
    assert [(a.kind, a.reason) for a in dry.plan.actions if a.identifier == "demo-debian"] == [("keep", "up to date")]
    assert _states(settings, "demo-debian") == ["retired"]
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    assert _states(settings, "demo-debian") == ["active"]


def test_records_of_an_unconfigured_list_are_reconciled_too(world: DemoWorld) -> None:
    world.publish(demo_images("1.0"))
    settings = _settings(world)
    sync(settings, dry_run=False)
    sidecar = world.root / "archive" / "demo" / "demo-alpine-1.0.raw.json"
    sidecar.unlink()  # an operator removed it by hand ...
    path = world.root / "imagesync.yaml"
    data = yaml.safe_load(path.read_text())
    data["lists"] = {}  # ... and the list was unsubscribed
    path.write_text(yaml.safe_dump(data))
    sync(config.load(path), dry_run=False)
    assert _states(settings, "demo-alpine") == ["deleted"]
    assert _states(settings, "demo-debian") == ["active"]


def test_an_image_deleted_by_hand_is_re_added_as_such(world: DemoWorld) -> None:
    world.publish(demo_images("1.0"))
    settings = _settings(world)
    sync(settings, dry_run=False)
    for path in (world.root / "archive" / "demo").glob("demo-alpine-1.0.raw*"):
        path.unlink()
    again = sync(settings, dry_run=False)
    assert [(r.action.kind, r.action.reason, r.status) for r in again.results if r.action.kind != "keep"] == [
        ("add", "missing from target: re-add", "done")]
    assert _states(settings, "demo-alpine") == ["deleted", "active"]
