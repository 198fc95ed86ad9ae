"""Run the real ``imagesync`` CLI in this process and SIGKILL it at one chosen point: the crash suite's only fault.

Usage: ``python killer.py POINT IMAGESYNC-ARGS...`` where POINT is ``module:Qualified.name@WHEN#N``:
the N-th call (default 1) of that function or method triggers the kill ``before`` it runs, ``after`` it returned,
or ``during:MS``, MS milliseconds after it started (a kill at a random moment inside it). SIGKILL cannot be
caught, so nothing is flushed, closed or rolled back: exactly what a power cut or the OOM killer does.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the repository root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Wrap the function named by ``point`` so that its N-th call kills this process. Raises ValueError."""
    where, _, rest = point.partition("@")
    when, _, nth = rest.partition("#")
    module_name, _, qualname = where.partition(":")
    if not qualname or not (when in ("before", "after") or when.startswith("during:")):
        raise ValueError(f"bad kill point {point!r}")
    owner: Any = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    setattr(owner, attr, _killing(getattr(owner, attr), when, int(nth or 1)))


def _killing(real: Callable[..., Any], when: str, nth: int) -> Callable[..., Any]:
    calls = 0
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            hit = calls == nth
        if hit and when == "before":
            die()
        if hit and when.startswith("during:"):
            threading.Timer(float(when.split(":", 1)[1]) / 1000, die).start()
        result = real(*args, **kwargs)
        if hit and when == "after":
            die()
        return result

    return wrapper


if __name__ == "__main__":
    arm(sys.argv[1])
    from imagesync.cli.main import main

    main(sys.argv[2:])
