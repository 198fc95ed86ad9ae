"""Running the real CLI as cron does and reading what an operator gets back: exit code, JSON report, stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagesync.config import settings as config
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import sync

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def list_entry(self, name: str) -> dict[str, Any]:
        return next(entry for entry in self.report["lists"] if entry["name"] == name)

    def failed_lists(self) -> dict[str, str]:
        return {e["name"]: e["error"] for e in self.report["lists"] if e["status"] == "failed"}

    def failed_actions(self) -> dict[tuple[str, str, str], str]:
        """(target, image, action) -> error of every failed action."""
        return {(a["target"], a["image"], a["action"]): a["error"] for a in self.report["actions"]
                if a["status"] == "failed"}

    def log_lines(self, *fields: str) -> list[str]:
        """stderr lines carrying every one of ``fields`` (e.g. ``list=demo``, ``result=failed``)."""
        return [line for line in self.stderr.splitlines() if all(f in line for f in fields)]

    def error_line(self) -> str:
        """The single ``imagesync: error:`` line of a run that stopped before its report."""
        lines = self.log_lines("imagesync: error:")
        assert len(lines) == 1, self.stderr
        return lines[0]

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}"


def imagesync(cfg: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Outcome:
    """``imagesync --config cfg sync --format json`` (or ``args``) in a subprocess."""
    argv = [sys.executable, "-m", "imagesync", "--config", str(cfg), *(args or ("sync", "--format", "json"))]
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=environment)
    return Outcome(done.returncode, done.stdout, done.stderr)


def clean_sync(cfg: Path) -> None:
    """The first run of a scenario, in-process (it is set-up, not what is tested): it must succeed."""
    result = sync(config.load(cfg), dry_run=False)
    failures = [o.error for o in result.lists if o.error] + [r.error for r in result.results if r.error]
    assert result.exit_code == EXIT_OK and not failures, failures


def assert_one_line(message: str | None, *names: str, misleads: tuple[str, ...] = ()) -> str:
    """An error an operator can act on: one line, naming what failed (``names``), not a bug report, and not
    saying any of ``misleads``."""
    assert message, "no error message"
    assert "\n" not in message and "\r" not in message, message
    assert "unexpected error" not in message and "Traceback" not in message, message
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"
    for wrong in misleads:
        assert wrong not in message, f"{wrong!r} misleads in: {message}"
    return message


def assert_no_crash(outcome: Outcome) -> None:
    """No traceback and no "unexpected error" anywhere: every fault here is an expected one."""
    for stream in (outcome.stdout, outcome.stderr):
        assert "Traceback" not in stream and "unexpected error" not in stream, outcome.explain()
