"""Faults of the host imagesync runs on: a full cache disk, qemu-img missing or failing, an unusable state.db.

Image faults: a clean first run puts version 1 of ``demo-a``, ``demo-b`` and ``other-c`` in the archive; then list
``demo`` names only ``demo-a`` version 2, which the fault stops. The run must exit 1, say in one line that
``demo-a`` failed and why, keep ``demo-a`` version 1 active and retire ``demo-b`` (work that needs neither disk
space nor qemu-img).

state.db faults stop the whole run before it changes anything: the exit code says which (75: try later, 3: repair).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from imagesync.demo.world import DemoImage, as_qcow2
from imagesync.errors import EXIT_LOCKED, EXIT_NOTHING_DONE, EXIT_PARTIAL
from tests.faults.outcome import assert_no_crash, assert_one_line, clean_sync, imagesync
from tests.faults.scene import ARCHIVE, Scene, holdings, image
from tests.support.images import qcow2_with_unaligned_cluster
from tests.support.statedb import held
from tests.support.tmpfs import tmpfs

MiB = 1024 * 1024
BASELINE = {"demo/demo-a-1": "active", "demo/demo-b-1": "active", "other/other-c-1": "active"}


def _big(_work: Path) -> DemoImage:
    return image("demo-a", "2", data=hashlib.sha512(b"big").digest() * (10 * MiB // 64))  # more than the 8 MiB cache


def _qcow2(work: Path, size: int = 64 * 1024) -> DemoImage:
    # Non-zero data: a conversion writes every byte of it.
    return as_qcow2(image("demo-a", "2", data=hashlib.sha512(b"qcow2").digest() * (size // 64)), work)


def _qcow2_filling_the_cache(work: Path) -> DemoImage:
    return _qcow2(work, 9 * MiB // 2)  # the download fits in the 8 MiB cache, its conversion does not


def _unreadable_header(work: Path) -> DemoImage:
    return replace(_qcow2(work), data=b"QFI\xfb\x00\x00\x00\x03" + bytes(range(256)) * 64)


def _unaligned_cluster(work: Path) -> DemoImage:
    good = _qcow2(work)
    return replace(good, data=qcow2_with_unaligned_cluster(good.data))


@dataclass(frozen=True)
class HostFault:
    new_a: Callable[[Path], DemoImage]
    cause: str
    formats: tuple[str, ...] = ("qcow2", "raw")  # what the archive accepts; raw alone makes qcow2 convert
    cache_mib: int = 0  # > 0: cache_dir is a tmpfs of this size
    path: str | None = None  # PATH of the run


HOST_FAULTS = {
    "cache-too-small": HostFault(_big, "not enough free space", cache_mib=8),
    "disk-full-converting": HostFault(_qcow2_filling_the_cache, "No space left", formats=("raw",), cache_mib=8),
    "qemu-img-missing": HostFault(lambda _work: image("demo-a", "2"), "qemu-img is not installed", path="/nowhere"),
    "qemu-img-refuses": HostFault(_unreadable_header, "qemu-img info failed"),
    "qemu-img-convert-fails": HostFault(_unaligned_cluster, "qemu-img convert failed", formats=("raw",)),
}


def _run_with(scene: Scene, run: Path, fault: HostFault) -> Path:
    """The scenario up to the faulty run, which is left to the caller."""
    scene.publish("demo", [image("demo-a"), image("demo-b")])
    scene.publish("other", [image("other-c")])
    cfg = scene.config(run, targets={ARCHIVE: {"driver": "directory", "path": str(run / ARCHIVE),
                                               "disk_formats": list(fault.formats)}},
                       download={"min_free_space": 0})
    clean_sync(cfg)
    scene.publish("demo", [fault.new_a(run)])
    return cfg


@pytest.mark.parametrize("fault", list(HOST_FAULTS))
def test_host_fault_fails_that_image_alone(scene: Scene, tmp_path: Path, fault: str) -> None:
    row = HOST_FAULTS[fault]
    run = tmp_path / "run"
    run.mkdir()
    if row.cache_mib:
        with tmpfs(run / "cache", f"{row.cache_mib}m"):
            cfg = _run_with(scene, run, row)
            outcome = imagesync(cfg)
            leftovers = sorted(p.name for p in (run / "cache" / "converted").glob(".work-*"))
    else:
        cfg = _run_with(scene, run, row)
        outcome = imagesync(cfg, env={"PATH": row.path} if row.path else None)
        leftovers = []

    assert outcome.code == EXIT_PARTIAL, outcome.explain()
    assert_no_crash(outcome)
    assert outcome.failed_lists() == {}
    failed = outcome.failed_actions()
    assert list(failed) == [(ARCHIVE, "demo-a", "update")], outcome.explain()
    assert_one_line(failed[(ARCHIVE, "demo-a", "update")], "demo/demo-a", row.cause)
    assert len(outcome.log_lines("list=demo", "image=demo-a", "result=failed")) == 1, outcome.stderr
    assert holdings(run / ARCHIVE) == {
        "demo/demo-a-1": "active",  # nothing retired: the new version never arrived
        "demo/demo-b-1": "retired",  # the other work, which needs no space and no qemu-img, done
        "other/other-c-1": "active",
    }
    assert leftovers == []


def _locked(db: Path, cfg: Path) -> tuple[int, str, str]:
    with held(db):
        outcome = imagesync(cfg, env={"IMAGESYNC_STATE_BUSY_TIMEOUT": "0.5"})
    return outcome.code, outcome.error_line(), outcome.stdout


def _broken(damage: Callable[[Path], None]) -> Callable[[Path, Path], tuple[int, str, str]]:
    def run(db: Path, cfg: Path) -> tuple[int, str, str]:
        damage(db)
        outcome = imagesync(cfg)
        return outcome.code, outcome.error_line(), outcome.stdout
    return run


def _garbage(db: Path) -> None:
    db.write_bytes(b"these are not the pages you are looking for\n" * 200)


def _truncate(db: Path) -> None:
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


STATE_FAULTS = {
    "state-locked": (_locked, EXIT_LOCKED, "locked by another process"),
    "state-not-a-database": (_broken(_garbage), EXIT_NOTHING_DONE, "not an SQLite database"),
    "state-truncated": (_broken(_truncate), EXIT_NOTHING_DONE, "damaged"),
}


@pytest.mark.parametrize("fault", list(STATE_FAULTS))
def test_state_fault_stops_the_run_before_any_change(scene: Scene, tmp_path: Path, fault: str) -> None:
    provoke, code, cause = STATE_FAULTS[fault]
    scene.publish("demo", [image("demo-a"), image("demo-b")])
    scene.publish("other", [image("other-c")])
    cfg = scene.config(tmp_path / "run")
    clean_sync(cfg)
    scene.publish("demo", [image("demo-a", "2")])  # work a usable state would let the run do
    archive = tmp_path / "run" / ARCHIVE
    files = sorted(p.relative_to(archive) for p in archive.rglob("*"))

    exit_code, line, stdout = provoke(tmp_path / "run" / "state" / "state.db", cfg)

    assert exit_code == code, line
    assert_one_line(line, str(tmp_path / "run" / "state" / "state.db"), cause)
    assert stdout == ""  # no report pretending a run happened
    assert holdings(archive) == BASELINE
    assert sorted(p.relative_to(archive) for p in archive.rglob("*")) == files
