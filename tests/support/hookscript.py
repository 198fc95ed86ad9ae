"""A hook command for tests: a python script appending its arguments, stdin and environment to a JSON-lines file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_SCRIPT = """\
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"stdin": sys.stdin.read(), "env": dict(os.environ), "argv": sys.argv[2:]}) + "\\n")
"""


def recorder(directory: Path) -> tuple[list[str], Path]:
    """The argv of a recording hook (append arguments of your own) and the file its calls go to."""
    script = directory / "record.py"
    script.write_text(_SCRIPT)
    out = directory / "calls.jsonl"
    return [sys.executable, str(script), str(out)], out


def calls(out: Path) -> list[dict[str, Any]]:
    """Every recorded call, in order: ``argv`` (the arguments after the file), ``stdin`` (text), ``env``."""
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
