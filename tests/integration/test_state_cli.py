"""A state.db that cannot be used, as operators meet it: the real CLI in a subprocess, a real SQLite file.

Locked, not a database, truncated and unreadable are four different situations with four different remedies; each
must say which one it is, and none may change the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagesync.demo.world import DemoWorld, build, demo_images
from imagesync.errors import EXIT_LOCKED, EXIT_NOTHING_DONE, EXIT_OK
from imagesync.state.store import StateStore
from tests.support.statedb import held

REPO = Path(__file__).resolve().parents[2]
# Short enough to keep the suite fast, long enough to tell "waited" from "failed at once".
BUSY = "0.5"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with build(tmp_path) as w:
        w.publish(demo_images())
        yield w


def config_of(world: DemoWorld) -> Path:
    return world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})


def state_db(world: DemoWorld) -> Path:
    """A real imagesync state (one recorded run) in the world's state_dir."""
    with StateStore.open(world.root / "state") as store:
        store.start_run(dry_run=False, at=datetime(2026, 1, 1, tzinfo=UTC))
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file, none in the WAL
    return world.root / "state" / "state.db"


def run(config: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "IMAGESYNC_STATE_BUSY_TIMEOUT": BUSY}
    cmd = [*prefix, sys.executable, "-m", "imagesync", "--config", str(config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("imagesync: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def holder(world: DemoWorld) -> Iterator[Path]:
    """state.db with another process holding an exclusive transaction on it."""
    with held(state_db(world)) as path:
        yield path


def test_locked_state_is_exit_75_after_a_logged_wait_and_never_suggests_moving_it(
        world: DemoWorld, holder: Path) -> None:
    before = holder.read_bytes()
    started = time.monotonic()
    result = run(config_of(world), "sync")
    assert time.monotonic() - started < 20  # the configured wait, not the 30 s default
    assert result.returncode == EXIT_LOCKED, result.stderr
    line = error_line(result)
    assert f"{holder}: locked by another process" in line
    assert "not an imagesync run" in line
    assert "move" not in line and "afresh" not in line and "restore" not in line
    assert "waiting up to 0.5s" in result.stderr  # the log line says what is waited for, before the wait
    assert holder.read_bytes() == before


def test_locked_state_does_not_stop_a_dry_run_or_images(world: DemoWorld, holder: Path) -> None:
    # WAL: readers see the last committed state while another process holds the write lock.
    plan = run(config_of(world), "plan")
    assert plan.returncode == EXIT_OK, plan.stderr
    assert "add" in plan.stdout
    images = run(config_of(world), "images")
    assert images.returncode == EXIT_OK, images.stderr


def garbage(path: Path) -> None:
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "not-a-database": (garbage, "not an SQLite database", "restore state.db from a backup"),
    "truncated": (truncated, "damaged (database disk image is malformed", "sqlite3"),
}


@pytest.mark.parametrize("command", ["sync", "plan", "images"])
@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_state_is_named_exit_3_and_left_as_it_is(world: DemoWorld, kind: str, command: str) -> None:
    damage, message, hint = DAMAGE[kind]
    path = state_db(world)
    damage(path)
    before = path.read_bytes()
    result = run(config_of(world), command)
    assert result.returncode == EXIT_NOTHING_DONE, result.stderr
    line = error_line(result)
    assert f"{path}: {message}" in line
    assert hint in line
    assert "locked" not in line and "unexpected" not in line
    assert path.read_bytes() == before  # never reset, repaired or replaced behind the operator's back
    wal = path.with_name("state.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # nothing was written for a later checkpoint either


def drop_file_access() -> tuple[str, ...]:
    """A command prefix under which the permission bits apply (root would read through mode 000)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: mode 000 would not make state.db unreadable")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search")


@pytest.mark.parametrize("command", ["sync", "plan", "images"])
def test_unreadable_state_says_so_and_is_not_called_damaged(world: DemoWorld, command: str) -> None:
    path = state_db(world)
    path.chmod(0)
    prefix = drop_file_access()
    try:
        result = run(config_of(world), command, prefix=prefix)
    finally:
        path.chmod(0o644)
    assert result.returncode == EXIT_NOTHING_DONE, result.stderr
    line = error_line(result)
    assert f"{path}: cannot open: permission denied" in line.lower()
    assert "read and write access" in line
    assert "malformed" not in line and "backup" not in line and "move" not in line
    with StateStore.open(path.parent) as store:  # untouched and fine once readable again
        assert len(store.last_runs(5)) == 1
