"""What an operator's log sees of a run (a real subprocess against the demo world): failures at ERROR, successes at
INFO, keeps at DEBUG; ``-q`` silent on success and one line per failure; JSON lines with real fields; syslog
datagrams; library warnings through the same formatter and redactor."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.demo.world import DemoWorld, demo_images
from tests.support.cli import run

RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                    r"(?P<logger>[\w.]+): ")
# Outside the token-protected /store/ path of the demo server.
TAMPERED = "/public/tampered.list"


def configure(world: DemoWorld, *, tampered: bool = False, **extra: object) -> Path:
    """The demo list into a directory target; with ``tampered`` a second list, a copy of it with one byte changed."""
    signed = world.publish(demo_images())
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}},
                               **extra})
    if tampered:
        world.server.put(TAMPERED, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
        data = yaml.safe_load(path.read_text())
        data["lists"]["bad"] = {"url": world.server.url(TAMPERED)}
        path.write_text(yaml.safe_dump(data))
    return path


def levels(stderr: str, *fields: str) -> list[str]:
    """The level of every record whose line carries all of ``fields``."""
    found = []
    for line in stderr.splitlines():
        match = RECORD.match(line)
        if match and all(f in line for f in fields):
            found.append(match.group("level"))
    return found


def test_failures_at_error_successes_at_info_keeps_at_debug(world: DemoWorld) -> None:
    config = configure(world, tampered=True)
    first = run("sync", config=config)
    assert first.returncode == 1, first.stdout + first.stderr
    assert levels(first.stderr, "list=bad", "result=failed", "tampered") == ["ERROR"], first.stderr
    assert levels(first.stderr, "list=demo", "result=ok") == ["INFO"], first.stderr
    assert levels(first.stderr, "list=demo", "action=add", "result=done") == ["INFO", "INFO"], first.stderr
    again = run("-v", "sync", config=config)
    assert levels(again.stderr, "list=demo", "action=keep", "result=done") == ["DEBUG", "DEBUG"], again.stderr
    quiet_keeps = run("sync", config=config)
    assert levels(quiet_keeps.stderr, "action=keep") == [], quiet_keeps.stderr


def test_a_failed_action_is_an_error_logged_once(world: DemoWorld) -> None:
    config = configure(world)
    alpine = demo_images()[0]
    world.server.remove(alpine.path)
    result = run("sync", config=config)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stderr.splitlines() if "demo-alpine" in line and "ERROR" in line]
    assert len(failed) == 1, result.stderr  # the action, not the download as well
    assert "action=add result=failed" in failed[0] and "not found at" in failed[0]
    assert levels(result.stderr, "image=demo-debian", "action=add", "result=done") == ["INFO"], result.stderr


def test_quiet_prints_nothing_when_all_went_well(world: DemoWorld) -> None:
    config = configure(world)
    result = run("-q", "sync", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    again = run("-q", "sync", config=config)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    collected = run("-q", "gc", config=config)  # cron runs gc after sync
    assert (collected.returncode, collected.stdout, collected.stderr) == (0, "", "")


def test_quiet_prints_one_line_per_failure(world: DemoWorld) -> None:
    config = configure(world, tampered=True)
    world.server.remove(demo_images()[1].path)
    result = run("-q", "sync", config=config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert all(levels(line) == ["ERROR"] for line in lines), result.stderr
    assert "list=bad" in lines[0] and "content does not match the signed digest (tampered)" in lines[0]
    assert "image=demo-debian" in lines[1] and "result=failed" in lines[1]
    assert world.token not in result.stderr


def json_records(stderr: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records
    return records


def test_json_log_lines_carry_the_fields_as_keys(world: DemoWorld) -> None:
    config = configure(world, tampered=True)
    result = run("--log-format", "json", "sync", config=config)
    assert result.returncode == 1, result.stdout + result.stderr
    records = json_records(result.stderr)
    adds = [r for r in records if r.get("action") == "add"]
    assert {r["image"] for r in adds} == {"demo-alpine", "demo-debian"}, records
    for add in adds:
        assert add["level"] == "info" and add["list"] == "demo" and add["version"] == "1.0"
        assert add["target"] == "archive" and add["result"] == "done"
        assert isinstance(add["bytes"], int) and add["bytes"] > 0
        assert isinstance(add["seconds"], float | int)
        assert "list=" not in add["message"] and "result=" not in add["message"]
    downloads = [r for r in records if r.get("result") == "downloaded"]
    assert len(downloads) == 2 and all(isinstance(r["bytes"], int) and "seconds" in r for r in downloads)
    [failed] = [r for r in records if r.get("list") == "bad"]
    assert failed["level"] == "error" and failed["result"] == "failed"
    assert failed["error"].endswith("content does not match the signed digest (tampered)")


def test_syslog_receives_every_record(world: DemoWorld, tmp_path: Path) -> None:
    address = tmp_path / "log.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(address))
    try:
        config = configure(world, tampered=True, log={"syslog": True, "syslog_socket": str(address),
                                                       "syslog_facility": "local3"})
        result = run("-q", "sync", config=config)
        assert result.returncode == 1, result.stdout + result.stderr
        receiver.setblocking(False)
        datagrams = []
        while True:
            try:
                datagrams.append(receiver.recv(65536).decode())
            except BlockingIOError:
                break
    finally:
        receiver.close()
    # local3 is facility 19: priority 19 * 8 + severity (3 error, 6 info); -q quiets stderr, not syslog.
    failed = [d for d in datagrams if "list=bad" in d]
    assert len(failed) == 1 and failed[0].startswith("<155>imagesync["), datagrams
    assert " ERROR imagesync.sources.hepix.stage: " in failed[0]
    added = [d for d in datagrams if "action=add result=done" in d]
    assert len(added) == 2 and all(d.startswith("<158>imagesync[") for d in added), datagrams
    assert world.token not in "".join(datagrams)


def test_syslog_socket_missing_is_a_warning_not_a_traceback(world: DemoWorld, tmp_path: Path) -> None:
    config = configure(world, log={"syslog": True, "syslog_socket": str(tmp_path / "no.sock")})
    result = run("sync", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert levels(result.stderr, "no.sock") == ["WARNING"], result.stderr
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr


LIBRARY_WARNINGS = textwrap.dedent("""
    import sys
    import requests
    from keystoneauth1 import discover, session
    from imagesync.cli import logs
    from imagesync.util import redact

    logs.configure(20, sys.argv[2])
    redact.register("s3cret-in-url")
    # urllib3 calls warnings.warn (InsecureRequestWarning) for an unverified HTTPS request.
    requests.get(sys.argv[1], verify=False, timeout=10)
    # keystoneauth logs its discovery warning on the keystoneauth.discover logger, URL and all.
    endpoint = discover.EndpointData(catalog_url="http://user:s3cret-in-url@127.0.0.1:9/image",
                                     service_type="image")
    endpoint.get_versioned_data(session.Session(timeout=2), allow_version_hack=True, min_version="2",
                                max_version="2.latest")
""")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_library_warnings_go_through_the_same_formatter_and_redactor(world: DemoWorld, fmt: str) -> None:
    world.server.put("/public/hello", b"hello")
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    result = subprocess.run([sys.executable, "-c", LIBRARY_WARNINGS, world.server.url("/public/hello"), fmt],
                            capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert "s3cret-in-url" not in result.stderr
    lines = result.stderr.splitlines()
    if fmt == "json":
        records = json_records(result.stderr)
        by_logger = {r["logger"]: r for r in records}
        assert "InsecureRequestWarning" in by_logger["py.warnings"]["message"]
        assert by_logger["keystoneauth.discover"]["level"] == "warning"
        assert "http://***@127.0.0.1:9/image" in by_logger["keystoneauth.discover"]["message"]
        return
    assert all(RECORD.match(line) for line in lines), result.stderr
    assert levels(result.stderr, "py.warnings", "InsecureRequestWarning") == ["WARNING"], result.stderr
    assert levels(result.stderr, "keystoneauth.discover", "http://***@127.0.0.1:9/image") == ["WARNING"]
