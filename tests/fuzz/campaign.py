"""Seeds, budgets and failure reports shared by the fuzz tests (see README.md in this directory).

Each case draws from its own ``random.Random(f"{seed}/{campaign}/{case}")``, so any single case can be replayed
with ``IMAGESYNC_FUZZ_SEED`` and ``IMAGESYNC_FUZZ_CASE`` without running the ones before it.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
DEFAULT_SEED = "imagesync-ci-1"
_MAX_FAILURES = 5


def seed() -> str:
    return os.environ.get("IMAGESYNC_FUZZ_SEED") or DEFAULT_SEED


def replaying() -> bool:
    """True when ``IMAGESYNC_FUZZ_CASE`` asks for one case: the campaign-wide sanity checks do not apply."""
    return bool(os.environ.get("IMAGESYNC_FUZZ_CASE"))


def scale() -> float:
    """``IMAGESYNC_FUZZ_SCALE`` (default 1): multiplies every campaign's number of cases."""
    return float(os.environ.get("IMAGESYNC_FUZZ_SCALE") or "1")


def run(name: str, cases: int, generate: Callable[[random.Random], tuple[T, str]], check: Callable[[T], str], *,
        save: Callable[[T, Path], None], out_dir: Path, context: str = "") -> Counter[str]:
    """Run ``cases`` x scale cases: ``generate`` an input, ``check`` it (returns an outcome label).

    Any exception from ``check`` (an escaped library error or a failed oracle assertion) is a finding: the input
    is saved under ``out_dir`` and the test fails with the seed, the case number, the mutations applied and
    ``context`` (what else a byte-exact replay needs, e.g. the session's CA directory).
    """
    only = os.environ.get("IMAGESYNC_FUZZ_CASE")
    indices = [int(only)] if only else range(max(1, round(cases * scale())))
    outcomes: Counter[str] = Counter()
    findings: list[str] = []
    started = time.perf_counter()
    for index in indices:
        value, note = generate(random.Random(f"{seed()}/{name}/{index}"))
        try:
            outcomes[check(value)] += 1
        except Exception as exc:
            path = out_dir / f"{name}-{index}.input"
            save(value, path)
            where = "".join(traceback.format_tb(exc.__traceback__)[-2:]).strip().replace("\n", " | ")
            findings.append(f"case {index} ({note}): {type(exc).__name__}: {exc} [input: {path}] at {where}")
            if len(findings) >= _MAX_FAILURES:
                break
    elapsed = time.perf_counter() - started
    print(f"fuzz {name}: {sum(outcomes.values())} cases in {elapsed:.1f}s, seed {seed()!r}: {dict(outcomes)}")
    replay = f"IMAGESYNC_FUZZ_SEED={seed()} IMAGESYNC_FUZZ_CASE=<case> pytest tests/fuzz"
    assert not findings, f"fuzz {name} found problems (replay: {replay}; {context}):\n" + "\n".join(findings)
    return outcomes


def save_bytes(value: bytes, path: Path) -> None:
    path.write_bytes(value)
