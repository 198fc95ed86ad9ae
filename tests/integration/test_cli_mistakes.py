"""Mistakes caught before they cost a run, as operators meet them: the real CLI in a subprocess, a real HTTPS list
server, a pseudo-terminal where a person would be watching."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from imagesync.demo.world import DemoWorld, build, demo_images

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with build(tmp_path) as w:
        w.publish(demo_images())
        yield w


def env(config: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "IMAGESYNC_CONFIG": str(config)}


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "imagesync", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env(config))


def run_on_terminal(*args: str, config: Path) -> tuple[int, str, float]:
    """Run with a pseudo-terminal as stdout (stderr a pipe); return exit code, terminal output, wall seconds."""
    master, slave = pty.openpty()
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "imagesync", *args], stdout=slave, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env=env(config))
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end of the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert child.stderr is not None
    child.stderr.read()
    code = child.wait(timeout=120)
    elapsed = time.monotonic() - started
    reader.join(timeout=10)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace"), elapsed


# -- verify --------------------------------------------------------------------------------------------------


def test_verify_url_with_ca_dir_trusts_it_for_the_https_fetch_too(world: DemoWorld, tmp_path: Path) -> None:
    # The server's certificate comes from the demo CA, which only --ca-dir names (no config file at all).
    world.server.put("/public/demo.list", world.publish(demo_images()))
    result = run("verify", world.server.url("/public/demo.list"), "--ca-dir", str(world.ca_dir),
                 config=tmp_path / "absent.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("VERIFIED")


def test_verify_unknown_name_lists_the_configured_names(world: DemoWorld) -> None:
    config = world.write_config()
    data = yaml.safe_load(config.read_text())
    data["lists"]["other"] = {"url": world.server.url("/store/vo/other/image.list")}
    config.write_text(yaml.safe_dump(data))
    result = run("verify", "dmeo", config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dmeo: not a configured list, an existing file or a URL (configured lists: demo, other)" in result.stderr


# -- patience at a terminal -------------------------------------------------------------------------------------


def refused_url() -> str:
    """An https URL on 127.0.0.1 whose port nobody listens on: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}/image.list"


def refused_config(tmp_path: Path) -> Path:
    path = tmp_path / "imagesync.yaml"
    path.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache"),
        # Two retries: 1 s + 2 s of backoff without a terminal, enough to tell apart and short enough to wait for.
        "download": {"retries": 2, "min_free_space": "1MiB"},
        "lists": {"gone": {"url": refused_url()}},
        "targets": {"nowhere": {"driver": "noop"}},
    }))
    return path


@pytest.mark.parametrize("command", [("lists",), ("plan",), ("check",), ("verify", "gone")])
def test_interactive_commands_give_up_quickly_at_a_terminal(tmp_path: Path, command: tuple[str, ...]) -> None:
    code, output, elapsed = run_on_terminal(*command, config=refused_config(tmp_path))
    assert code != 0, output
    assert "connection refused" in output.lower() and "gave up after 2 attempts" in output, output
    assert elapsed < 4.0  # one retry after 0.5 s; interpreter start-up is the rest


def test_without_a_terminal_the_configured_retries_stay(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run("lists", "--format", "json", config=refused_config(tmp_path))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    (entry,) = json.loads(result.stdout)["lists"]
    assert "gave up after 3 attempts" in entry["error"]
    assert elapsed >= 3.0  # 1 s + 2 s of backoff, as configured for cron


# -- Keystone unreachable ----------------------------------------------------------------------------------------


def test_unreachable_keystone_is_one_clean_line_naming_its_url(tmp_path: Path) -> None:
    auth_url = refused_url().replace("https://", "http://").replace("/image.list", "/v3")
    config = tmp_path / "imagesync.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache"),
        "targets": {"cloud": {"driver": "glance", "visibility": "private", "auth": {
            "auth_url": auth_url, "username": "imagesync", "password": "pw", "project_name": "imagesync",
            "user_domain_name": "Default", "project_domain_name": "Default"}}},
    }))
    expected = f"target cloud: list images: cannot reach Keystone at {auth_url}: connection refused"
    plan = run("plan", config=config)
    assert plan.returncode == 3, plan.stdout + plan.stderr
    assert f"target cloud: FAILED: {expected}\n" in plan.stdout
    check = run("check", config=config)
    assert f"FAIL  target  cloud: {expected}\n" in check.stdout
    for output in (plan.stdout, plan.stderr, check.stdout):
        assert "HTTPConnectionPool" not in output and "NewConnectionError" not in output
