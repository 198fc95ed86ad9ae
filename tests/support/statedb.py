"""Another process holding ``state.db``: what an ``sqlite3`` shell left in a transaction does to a run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Holds an exclusive transaction on the file given as argv[1] until its stdin is closed.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def held(path: Path) -> Iterator[Path]:
    """``path`` under an exclusive transaction of another process for the block."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        yield path
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
