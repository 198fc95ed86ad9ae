"""Progress bars through the real CLI against the demo world: on a pseudo-terminal as stderr, a bar per download and
per upload with bytes, rate and ETA, and log lines that never land inside a bar; off a terminal (or with -q) not a
byte of it, and tqdm not even imported."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.demo.server import Fault
from imagesync.demo.world import DemoImage, DemoWorld, build, demo_images

BIG = DemoImage(identifier="demo-big", version="1.0", title="Demo Big", data=os.urandom(8 * 1024 * 1024))
# What tqdm draws for a finished byte transfer: 100%, the size, the time taken < time left, and the rate.
FINISHED = r"100%\|[^|\n\r]*\| 8\.00M/8\.00M \[\d\d:\d\d<00:00, +[\d.]+[kMG]?B/s\]"
RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (?:DEBUG|INFO|WARNING|ERROR) ")
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with build(tmp_path) as w:
        w.publish([*demo_images(), BIG])
        yield w


def config(world: DemoWorld) -> Path:
    return world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})


def command(world: DemoWorld, *args: str) -> list[str]:
    return [sys.executable, "-m", "imagesync", "--config", str(config(world)), *args]


def on_terminal(cmd: list[str]) -> tuple[int, str, str]:
    """Run ``cmd`` with a pseudo-terminal as stderr; its exit code, stdout, and what the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    received = bytearray()
    reader = threading.Thread(target=_drain, args=(master, received), daemon=True)
    reader.start()
    try:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        stdout, _ = process.communicate(timeout=120)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return process.returncode, stdout, received.decode("utf-8", "replace")


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            return
        if not chunk:
            return
        into += chunk


def test_bars_for_each_download_and_upload_on_a_terminal(world: DemoWorld) -> None:
    code, stdout, terminal = on_terminal(command(world, "sync"))
    assert code == 0, terminal
    assert "3 add," in stdout  # the report is not disturbed
    plain = CSI.sub("", terminal)
    assert re.search(rf"download demo/demo-big: +{FINISHED}", plain), plain
    assert re.search(rf"upload archive: demo/demo-big: +{FINISHED}", plain), plain
    assert re.search(r"download demo/demo-alpine: +100%", plain), plain
    assert re.search(r"upload archive: demo/demo-debian: +100%", plain), plain


def test_log_lines_never_land_inside_a_bar(world: DemoWorld) -> None:
    # The big image's server holds its body back, so its bar is on screen while the small ones finish and log.
    world.server.inject(BIG.path, Fault.stall(1.5))
    code, _, terminal = on_terminal(command(world, "sync"))
    assert code == 0, terminal
    plain = CSI.sub("", terminal)
    records = list(RECORD.finditer(plain))
    assert len([m for m in records if "image downloaded" in plain[m.start():plain.find("\n", m.start())]]) == 3
    for match in records:
        before = plain[match.start() - 1] if match.start() else "\n"
        assert before in "\r\n", repr(plain[max(0, match.start() - 120):match.end()])
    # And the bar was there while they were written: the stalled download shows at 0 before it moves.
    assert re.search(r"download demo/demo-big: +0%", plain), plain


def test_quiet_draws_no_bar_on_a_terminal(world: DemoWorld) -> None:
    code, stdout, terminal = on_terminal(command(world, "-q", "sync"))
    assert (code, stdout, terminal) == (0, "", "")


def test_nothing_of_it_off_a_terminal(world: DemoWorld) -> None:
    cmd = [sys.executable, "-X", "importtime", *command(world, "sync")[1:]]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "tqdm" not in result.stderr  # -X importtime lists every module imported: a cron run never loads it
    log = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    assert "\r" not in log and "%|" not in log and "B/s" not in log
    assert len(RECORD.findall(log)) >= 6  # the log itself is all there: 3 downloads, 3 adds, ...
