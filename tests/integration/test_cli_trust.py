"""Trust under pressure, through the real CLI (a subprocess) against a real signed list served over HTTPS:
image URLs on internal addresses, and list fields that try to forge log or report lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from imagesync.demo.world import DemoImage, DemoWorld, demo_images
from tests.support.cli import run


def directory_config(world: DemoWorld, **download: object) -> Path:
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    data = yaml.safe_load(path.read_text())
    data["download"].update(download)
    path.write_text(yaml.safe_dump(data))
    return path


def test_sync_refuses_images_on_loopback_unless_allowed(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    refused = run("sync", config=directory_config(world, allowed_networks=[]))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    url = world.server.url(f"/images/{images[0].identifier}-{images[0].version}.img")
    assert (f"demo/{images[0].identifier}: refused to download {url}: 127.0.0.1 is a loopback address "
            "(add the network to download.allowed_networks if this is intended)") in refused.stderr
    assert world.server.hits(f"/images/{images[0].identifier}-{images[0].version}.img") == 0
    assert not list((world.root / "archive").rglob("*.img"))
    allowed = run("sync", config=directory_config(world))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


# A field that, printed raw, ends the current line, forges a record, clears the screen and reverses the text.
FORGED = "2026-01-01T00:00:00 ERROR imagesync.run.pipeline: FORGED"
HOSTILE = f"evil\n{FORGED}\r{FORGED}\x1b[2J\x85{FORGED}\u2028{FORGED}\u2029\u202e\x07"
RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) imagesync[\w.]*: ")


def forged_lines(text: str) -> list[str]:
    """Lines (by every Unicode line break) that start with the forged record, plus any raw control character."""
    lines = [line for line in text.splitlines() if line.startswith(FORGED)]
    controls = [f"raw {ch!r}" for ch in "\x1b\x07\r\x85\u2028\u2029\u202e" if ch in text]
    return lines + controls


def noop_config(world: DemoWorld) -> Path:
    return world.write_config({"targets": {"noop": {"driver": "noop"}}})


def test_hostile_image_fields_forge_no_log_or_report_line(world: DemoWorld) -> None:
    image = DemoImage(identifier=HOSTILE, version=f"1{HOSTILE}", title=f"T{HOSTILE}", data=bytes(range(256)) * 16)
    world.publish([image])
    config = noop_config(world)
    result = run("sync", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert forged_lines(result.stderr) == [] and forged_lines(result.stdout) == []
    assert all(RECORD.match(line) for line in result.stderr.splitlines()), result.stderr
    # A value with blanks is quoted (so it cannot pose as further fields) and escaped (so it cannot end the line).
    assert 'image="evil\\n2026-01-01T00:00:00 ERROR imagesync.run.pipeline: FORGED\\r' in result.stderr
    assert len(result.stdout.splitlines()) == 3, result.stdout  # list line, one add, the summary
    assert "demo/evil\\n2026-01-01T00:00:00 ERROR imagesync.run.pipeline: FORGED\\r" in result.stdout
    shown = run("images", config=config)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert forged_lines(shown.stdout) == [] and len(shown.stdout.splitlines()) == 2, shown.stdout


def test_hostile_list_identifier_forges_no_line_in_lists(world: DemoWorld) -> None:
    world.publish(demo_images(), fields={"dc:identifier": HOSTILE})
    result = run("lists", config=noop_config(world))
    assert result.returncode == 0, result.stdout + result.stderr
    assert forged_lines(result.stdout) == [] and forged_lines(result.stderr) == []
    assert "  list:    evil\\n2026-01-01T00:00:00 ERROR" in result.stdout


def test_text_stdout_cannot_encode_is_printed_escaped_not_raised(tmp_path: Path) -> None:
    # A path that is not UTF-8 reaches Python as surrogate escapes; this stdout refuses them (strict), as an
    # operator's UTF-8 locale does.
    missing = os.fsencode(tmp_path) + b"/no\xffsuch.list"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run([sys.executable, "-m", "imagesync", "verify", missing], capture_output=True, text=True,
                            timeout=60, check=False, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("NOT VERIFIED  "), result.stdout + result.stderr
    assert "no\\udcffsuch.list: file not found" in result.stdout
    assert "unexpected error" not in result.stderr


def test_check_reports_image_urls_that_downloads_would_refuse(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    refused = run("check", config=directory_config(world, allowed_networks=[]))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = next(line for line in refused.stdout.splitlines() if line.startswith("FAIL  list    demo image URLs: "))
    assert line.endswith(f"2 of 2 would be refused, e.g. {images[0].identifier}: 127.0.0.1 is a loopback address "
                         "(add the network to download.allowed_networks if this is intended)")
    allowed = run("check", config=directory_config(world))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "image URLs" not in allowed.stdout
