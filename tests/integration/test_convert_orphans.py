"""A killed run takes its qemu-img with it, and the next run neither trips over nor keeps its half-written output.

A real Python process runs the real conversion path (convert.prepare) with a real qemu-img, slowed down by a
wrapper that execs qemu-img with ``convert -r`` (qemu's own rate limit), so the conversion is still running when
the test SIGKILLs that process, as an OOM killer or ``kill -9`` of a stuck cron job would.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagesync.images.convert import prepare, qemu_img_available
from tests.support.qemu_calls import wrapped_qemu_img

pytestmark = pytest.mark.skipif(qemu_img_available() is None, reason="qemu-img not installed")

MiB = 1024 * 1024
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from imagesync.images.convert import prepare
    image, digest, cache = sys.argv[1:]
    prepare(Path(image), sha512=digest, accepted=["qcow2"], cache_dir=Path(cache), name="img-1")
""")


def slow_qemu_img(directory: Path) -> Path:
    """A ``qemu-img`` that is the real one (same process, via exec) with conversions limited to 1 MiB/s."""
    return wrapped_qemu_img(directory, 'if [ "$1" = convert ]; then shift; exec {real} convert -r 1M "$@"; fi\n'
                                       'exec {real} "$@"\n')


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a process from a later one reusing its pid), None once it is
    gone or a zombie (dead, only waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def converting_child(parent: int) -> int | None:
    """The pid of a running ``qemu-img convert`` whose parent is ``parent``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in status and argv[0].endswith(b"qemu-img") and b"convert" in argv:
            return int(entry.name)
    return None


def wait_for(predicate: Callable[[], object], seconds: float) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


@pytest.fixture
def image(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    # 24 MiB of non-zero data: at 1 MiB/s the conversion runs for many seconds.
    block = hashlib.sha512(b"orphan").digest() * (MiB // 64)
    path = tmp_path / "disk.raw"
    path.write_bytes(block * 24)
    yield path, hashlib.sha512(path.read_bytes()).hexdigest()


def test_killed_run_takes_qemu_img_along_and_next_run_converts(image: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = image
    cache = tmp_path / "cache"
    env = {**os.environ, "PATH": f"{slow_qemu_img(tmp_path / 'bin')}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.Popen([sys.executable, "-c", CHILD, str(path), digest, str(cache)], env=env)
    qemu_pid: int | None = None
    try:
        found = wait_for(lambda: converting_child(run.pid), 30)
        assert isinstance(found, int), "qemu-img convert never started"
        qemu_pid = found
        started = start_time(qemu_pid)
        assert started is not None
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        assert wait_for(lambda: start_time(qemu_pid) != started, 5), "qemu-img outlived the killed run"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if qemu_pid is not None and start_time(qemu_pid) is not None:
            os.kill(qemu_pid, signal.SIGKILL)  # the orphan of a failed run: ours, killed by pid
    stale = list((cache / "converted").glob(".work-*"))
    assert stale, "the killed conversion left no work directory (the test did not test anything)"
    prepared = prepare(path, sha512=digest, accepted=["qcow2"], cache_dir=cache, name="img-1")
    assert prepared.format == "qcow2" and prepared.path == cache / "converted" / f"{digest}.qcow2"
    assert [p.name for p in (cache / "converted").iterdir()] == [prepared.path.name]
