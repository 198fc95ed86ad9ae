"""The crash suite's scenario and its convergence check, shared by the directory and the Glance runs.

Two runs: the first adds three images (one a qcow2 the target converts to raw); the second adds a fourth, updates
one to a new version (a 9 MiB download of three chunks), refreshes the metadata of one and retires one. A kill
point names the run it strikes and where. After the kill the run is simply started again, and then the target
must hold exactly the expected images once each, the state must agree with it, ``gc`` must leave no partial or
scratch file, and the next run must plan nothing but keeps.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagesync.cli import report
from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, DemoWorld, as_qcow2
from imagesync.errors import EXIT_OK, LockHeldError
from imagesync.model import Held
from imagesync.run import gc, lock, pipeline
from imagesync.targets import base as drivers

KILLER = Path(__file__).resolve().parent / "killer.py"
ACTIVE = {("demo-alpine", "2.0"), ("demo-centos", "1.0"), ("demo-fedora", "1.0")}
RETIRED = {("demo-alpine", "1.0"), ("demo-debian", "1.0")}
# Long runs: IMAGESYNC_CRASH_RANDOM=300 adds that many seeded random points; IMAGESYNC_CRASH_SEED picks the seed.
RANDOM_POINTS = int(os.environ.get("IMAGESYNC_CRASH_RANDOM", "0"))
SEED = int(os.environ.get("IMAGESYNC_CRASH_SEED", "20261129"))


@dataclass(frozen=True)
class Point:
    """Where to kill: during run 1 or 2, at ``spec`` (see killer.py). An aimed point must be reached."""

    run: int
    spec: str
    aimed: bool = True

    def __str__(self) -> str:
        return f"run{self.run}:{self.spec.rpartition(':')[2]}"


def random_points(count: int, *, seed: int, moment_ms: int, writes: int) -> list[Point]:
    """Seeded random points: a random moment of a run, or right after a random state write."""
    rng = random.Random(seed)
    points = []
    for _ in range(count):
        run = rng.choice((1, 2))
        if rng.random() < 0.5:
            spec = f"imagesync.run.pipeline:sync@during:{rng.randrange(moment_ms)}"
        else:
            spec = f"imagesync.state.store:StateStore.transition@after#{rng.randrange(1, writes)}"
        points.append(Point(run, spec, aimed=False))
    return points


def _lock_released(state_dir: Path) -> None:
    """Wait until no process holds the run lock. A run killed while forking qemu-img leaves a child that holds a
    copy of the lock's descriptor until it reaches exec (milliseconds); cron's next run comes hours later."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with lock.acquire(state_dir):
                return
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _disk(name: str, size: int) -> bytes:
    block = hashlib.sha512(name.encode()).digest()
    return block * (size // len(block))


def images(workdir: Path) -> tuple[list[DemoImage], list[DemoImage]]:
    """The list's images in run 1 and in run 2."""
    alpine = DemoImage("demo-alpine", "1.0", "Demo Alpine", _disk("alpine-1", 64 * 1024))
    debian = DemoImage("demo-debian", "1.0", "Demo Debian", _disk("debian-1", 64 * 1024))
    centos = as_qcow2(DemoImage("demo-centos", "1.0", "Demo Centos", _disk("centos-1", 1024 * 1024)), workdir)
    alpine2 = DemoImage("demo-alpine", "2.0", "Demo Alpine", _disk("alpine-2", 9 * 1024 * 1024))
    refreshed = DemoImage(centos.identifier, centos.version, "Demo Centos (refreshed)", centos.data)
    fedora = as_qcow2(DemoImage("demo-fedora", "1.0", "Demo Fedora", _disk("fedora-1", 512 * 1024)), workdir)
    return [alpine, debian, centos], [alpine2, refreshed, fedora]


@dataclass
class Scenario:
    world: DemoWorld
    config_path: Path
    raw_view: Callable[[], list[tuple[str, str, str]]]  # (identifier, version, active|retired|<other status>)

    def settings(self) -> config.Settings:
        return config.load(self.config_path)

    def play(self, point: Point) -> int:
        """Both runs, ``point`` killing one of them, each killed run started again; the killed run's exit code."""
        first, second = images(self.world.root)
        killed = 0
        for run, published in ((1, first), (2, second)):
            self.world.publish(published)
            if point.run == run:
                killed = self._killed(point)
            result = pipeline.sync(self.settings(), dry_run=False)
            assert result.exit_code == EXIT_OK, [(r.action.identifier, r.error) for r in result.results if r.error]
        return killed

    def _killed(self, point: Point) -> int:
        proc = subprocess.run([sys.executable, str(KILLER), point.spec, "--config", str(self.config_path), "sync"],
                              capture_output=True, text=True, timeout=300, check=False)
        if point.aimed:
            assert proc.returncode == -9, f"{point} was never reached (exit {proc.returncode}): {proc.stderr[-2000:]}"
        _lock_released(self.settings().state_dir)
        return proc.returncode

    def assert_converged(self, scratch: Sequence[Path]) -> None:
        settings = self.settings()
        expected = sorted([(i, v, "active") for i, v in ACTIVE] + [(i, v, "retired") for i, v in RETIRED])
        assert sorted(self.raw_view()) == expected, "the target does not hold exactly the expected images once each"
        self._state_agrees(settings, self._inventory(settings))
        gc.collect(settings, dry_run=False)
        left = [p for root in (settings.cache_dir, *scratch) for p in root.rglob("*")
                if p.name.endswith((".partial", ".tmp")) or p.name.startswith(".work-")]
        assert left == [], f"partial or scratch files left after gc: {left}"
        plan = pipeline.sync(settings, dry_run=True)
        assert [a.kind for a in plan.plan.actions] == ["keep"] * len(ACTIVE), plan.plan.actions
        assert plan.plan.notes == ()

    @staticmethod
    def _inventory(settings: config.Settings) -> list[Held]:
        driver = drivers.load(settings.targets[0])
        try:
            return driver.inventory()
        finally:
            driver.close()

    @staticmethod
    def _state_agrees(settings: config.Settings, held: list[Held]) -> None:
        """``imagesync images`` (its JSON) says of every image what the target says, and knows nothing more."""
        with pipeline.open_state(settings, dry_run=True) as store:
            data = report.images_json(store, None)
        copies = [c for entry in data["images"] for c in entry["targets"] if c["state"] != "deleted"]
        truth = {h.target_id: "active" if h.active else "retired" for h in held}
        said = sorted((c["target_id"], c["state"]) for c in copies)
        assert said == sorted(truth.items()), f"imagesync images disagrees with the target: {said} != {truth}"
