"""The real ``imagesync`` command in a subprocess, as an operator or cron runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run(*args: str, config: Path, env: Mapping[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``imagesync --config CONFIG ARGS...`` with this interpreter; never raises for a non-zero exit."""
    cmd = [sys.executable, "-m", "imagesync", "--config", str(config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(env) if env is not None else None)
