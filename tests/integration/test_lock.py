"""The run lock with real processes: contention fails fast with one line, a killed holder needs no cleanup."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.errors import EXIT_LOCKED, LockHeldError
from imagesync.run import lock

HOLDER = """
import sys, time
from pathlib import Path
from imagesync.run import lock
held = lock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""

CONTENDER = """
import sys
from pathlib import Path
from imagesync.run import lock
from imagesync.errors import LockHeldError
try:
    lock.acquire(Path(sys.argv[1]))
except LockHeldError as error:
    print(error)
    sys.exit(error.exit_code)
print("acquired")
"""


def _python(code: str, state_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-c", code, str(state_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _python(HOLDER, tmp_path / "state")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "locked\n", proc.stderr.read() if proc.stderr else line
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_acquire_creates_dirs_and_records_holder(tmp_path: Path) -> None:
    state_dir = tmp_path / "a" / "b"
    with lock.acquire(state_dir) as held:
        path = state_dir / "lock"
        assert held.path == path and held.held
        content = path.read_text()
        assert f"pid {os.getpid()}\n" in content
        assert f"since {held.since.isoformat(timespec='seconds')}" in content
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not held.held
    assert path.read_text() == ""  # released: nobody named as holder


def test_lock_file_mode_despite_restrictive_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with lock.acquire(tmp_path):
            assert stat.S_IMODE((tmp_path / "lock").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_second_acquire_in_process_is_refused_then_succeeds_after_release(tmp_path: Path) -> None:
    first = lock.acquire(tmp_path)
    with pytest.raises(LockHeldError) as caught:
        lock.acquire(tmp_path)
    assert f"pid {os.getpid()}" in str(caught.value)
    first.release()
    first.release()  # idempotent
    with lock.acquire(tmp_path):
        pass


def test_second_process_fails_immediately_with_one_line(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    contender = _python(CONTENDER, tmp_path / "state")
    out, err = contender.communicate(timeout=30)
    assert contender.returncode == EXIT_LOCKED == 75, err
    message = out.strip()
    assert "\n" not in message
    assert message.startswith(f"another imagesync run holds {tmp_path / 'state' / 'lock'} (pid {holder.pid}, since 20")
    # The interpreter's own start-up is part of the measured time; the lock attempt itself never waits.
    assert time.monotonic() - started < 5
    in_process = time.monotonic()
    with pytest.raises(LockHeldError) as caught:
        lock.acquire(tmp_path / "state")
    assert time.monotonic() - in_process < 1
    assert caught.value.exit_code == EXIT_LOCKED
    assert str(caught.value) == message
    assert holder.poll() is None  # the holder still runs: its lock was not stolen


def test_sigkilled_holder_releases_the_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockHeldError):
        lock.acquire(tmp_path / "state")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    # The stale file still names the dead holder; only the kernel's flock matters.
    assert f"pid {holder.pid}" in (tmp_path / "state" / "lock").read_text()
    with lock.acquire(tmp_path / "state") as held:
        assert f"pid {os.getpid()}" in held.path.read_text()
    contender = _python(CONTENDER, tmp_path / "state")
    out, _ = contender.communicate(timeout=30)
    assert (contender.returncode, out) == (0, "acquired\n")
