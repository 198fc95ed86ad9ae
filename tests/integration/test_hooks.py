"""Hook commands run for real (imagesync.notify.hooks): a python script recording its stdin and environment, a failing
command, a ``sleep`` past the timeout (with a child of its own), a binary that does not exist."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagesync.notify import events, hooks
from imagesync.notify.events import Event
from imagesync.run.pipeline import SyncResult
from tests.support.hookscript import calls, recorder


def event() -> Event:
    now = datetime.now(UTC)
    return events.run_finished(SyncResult(dry_run=False, started_at=now, finished_at=now), exit_code=0, now=now)


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, dict[str, object]]]:
    return [(r.levelno, r.getMessage(), getattr(r, "imagesync_fields", {})) for r in caplog.records
            if r.name == "imagesync.notify.hooks"]


def test_the_document_on_stdin_and_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv, out = recorder(tmp_path)
    monkeypatch.setenv("OS_PASSWORD", "cloud-password-123")  # imagesync's own secrets stay with imagesync
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    sent = event()
    assert hooks.run((*argv, "--channel", "cloud"), sent, timeout=30) is True
    (call,) = calls(out)
    assert json.loads(call["stdin"]) == sent.document
    assert call["argv"] == ["--channel", "cloud"]
    env = call["env"]
    assert env["IMAGESYNC_EVENT_KIND"] == "run-finished"
    assert env["IMAGESYNC_EVENT_EXIT_CODE"] == "0"
    assert env["IMAGESYNC_EVENT_ID"] == sent.document["id"]
    assert env["PATH"] == os.environ["PATH"] and env["LC_TIME"] == "C.UTF-8"
    assert "OS_PASSWORD" not in env
    assert not {k for k in env if not k.startswith("IMAGESYNC_EVENT_")} - {"PATH", "HOME", "LC_TIME", "LANG", "TZ",
                                                                         "TMPDIR", "USER", "LOGNAME", "LC_CTYPE"}


def test_a_failing_hook_is_a_warning_naming_hook_event_and_its_last_words(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="imagesync")
    argv = (sys.executable, "-c", "import sys; print('details', file=sys.stderr); "
                                  "print('channel cloud not found', file=sys.stderr); sys.exit(3)")
    assert hooks.run(argv, event(), timeout=30) is False
    ((level, message, fields),) = records(caplog)
    assert (level, message) == (logging.WARNING, "hook failed")
    assert fields == {"hook": sys.executable, "event": "run-finished", "result": "failed",
                      "error": "exit status 3: channel cloud not found"}


def test_a_hook_past_its_timeout_is_killed_with_its_children(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid_file = tmp_path / "child.pid"
    # The hook starts a child of its own and waits: killing only the hook would leave the child running.
    argv = ("sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait")
    started = time.monotonic()
    assert hooks.run(argv, event(), timeout=1) is False
    assert time.monotonic() - started < 10
    ((level, message, fields),) = records(caplog)
    assert (level, message, fields["hook"], fields["event"]) == (logging.WARNING, "hook timed out", "sh",
                                                                 "run-finished")
    assert fields["error"] == "killed after 1 s (hook_timeout)"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("command", ["/nonexistent/notify", "imagesync-no-such-hook"])
def test_a_missing_command_is_an_error_naming_it(command: str, caplog: pytest.LogCaptureFixture) -> None:
    assert hooks.run((command, "--x"), event(), timeout=30) is False
    ((level, message, fields),) = records(caplog)
    assert (level, message) == (logging.ERROR, "hook cannot start")
    assert fields == {"hook": command, "event": "run-finished", "result": "failed",
                      "error": "No such file or directory"}


def test_a_hook_that_ignores_stdin_is_fine(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="imagesync")
    assert hooks.run(("true",), event(), timeout=30) is True
    assert records(caplog) == [(logging.DEBUG, "hook ran", {"hook": "true", "event": "run-finished",
                                                            "result": "done"})]
