"""Many targets in one run (issue 11): at most ``targets_concurrency`` worked on at once, each one alone.

Connecting to the targets and listing what they hold runs in a pool of that width, so a federation's sites are
reached side by side and a site that times out, answers 5xx or refuses auth costs its own timeout, not everyone's.
Pushing goes through a :class:`Gate`: an action on a target starts only when that target is already being worked
on or fewer than ``targets_concurrency`` targets are; inside a target its lane (``upload_concurrency``) still
bounds the uploads. Each image is still downloaded once for every target (:mod:`imagesync.run.flow`).

A target's ``deadline`` counts from the start of the run. Once it has passed, no new action starts on that target:
each is failed with "deadline passed" without touching the target. What is in flight is let finish (bounded by
the target's own ``timeout``), not abandoned: an upload cut off mid-stream is what a kill does, which the next run
repairs (invariant 4), but letting it end leaves nothing to repair, no half-shared image and no orphan, at the
cost of at most one timeout. The other targets are not affected; the run exits 1.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from imagesync.config.settings import TargetSettings
from imagesync.errors import ConfigError, ImagesyncError
from imagesync.model import Action, Held
from imagesync.targets.base import Driver
from imagesync.util.logfields import fields

log = logging.getLogger(__name__)
DEADLINE_PASSED = "deadline passed"
T = TypeVar("T")


@dataclass(frozen=True)
class Connected:
    """One target after connecting: its driver and what it holds, or why it could not be reached."""

    target: TargetSettings
    driver: Driver | None
    held: list[Held] = field(default_factory=list)
    error: str | None = None


def connect_all(chosen: Sequence[TargetSettings], *, width: int, connect: Callable[[TargetSettings], Driver],
                remembered: Mapping[str, Collection[str]]) -> list[Connected]:
    """Reach and list every target, ``width`` at a time; the outcomes in the order of ``chosen``. The caller closes
    the drivers of the reached targets. Raises ConfigError (a bad target setting, the operator's to fix before any
    run) once every connection is over, closing the drivers already open."""
    with ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="connect") as pool:
        futures = [pool.submit(_connect_one, t, connect, remembered.get(t.name, ())) for t in chosen]
    outcomes: list[Connected] = []
    errors: list[BaseException] = []
    for future in futures:
        exc = future.exception()
        if exc is None:
            outcomes.append(future.result())
        else:
            errors.append(exc)
    if errors:
        for outcome in outcomes:
            if outcome.driver is not None:
                outcome.driver.close()
        raise errors[0]
    return outcomes


def _connect_one(target: TargetSettings, connect: Callable[[TargetSettings], Driver],
                 known: Collection[str]) -> Connected:
    """Raises ConfigError (and any bug); a target that cannot be reached is an outcome."""
    driver: Driver | None = None
    try:
        driver = connect(target)
        return Connected(target, driver, driver.inventory(known=known))
    except ConfigError:
        _close(driver)
        raise
    except ImagesyncError as exc:
        _close(driver)
        message = exc.about(f"target {target.name}").one_line()
        log.error("target unreachable", extra=fields(target=target.name, result="unreachable", error=message))
        return Connected(target, None, error=message)
    except BaseException:
        _close(driver)
        raise


def _close(driver: Driver | None) -> None:
    if driver is not None:
        driver.close()


class Gate:
    """At most ``width`` targets worked on at once, and none past its deadline (monotonic instants by target)."""

    def __init__(self, width: int, deadlines: Mapping[str, float | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.width = max(1, width)
        self.deadlines = dict(deadlines)
        self.clock = clock
        self._changed = threading.Condition()
        self._active: dict[str, int] = {}  # target -> actions running on it

    def passed(self, target: str) -> bool:
        """True once ``target``'s deadline is behind us."""
        deadline = self.deadlines.get(target)
        return deadline is not None and self.clock() > deadline

    @contextmanager
    def entered(self, target: str) -> Iterator[None]:
        """Wait for a place for ``target`` (free at once if it is already being worked on), hold it meanwhile."""
        with self._changed:
            while target not in self._active and len(self._active) >= self.width:
                self._changed.wait()
            self._active[target] = self._active.get(target, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                self._active[target] -= 1
                if not self._active[target]:
                    del self._active[target]
                    self._changed.notify_all()

    def run(self, action: Action, step: Callable[[], T], *, late: Callable[[], T]) -> T:
        """``step`` once ``action``'s target has a place, or ``late`` (touching nothing) when its deadline has
        passed. A keep does nothing in the target, so it neither waits nor is late."""
        if action.kind == "keep":
            return step()
        if self.passed(action.target):
            return late()
        with self.entered(action.target):
            # The wait for a place may have taken the rest of the time.
            return late() if self.passed(action.target) else step()
