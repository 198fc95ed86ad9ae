"""Composes the stages of a run (DESIGN §1) and is the single place where ``--dry-run`` stops it."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from imagesync.config import preflight
from imagesync.config.settings import Settings, TargetSettings
from imagesync.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, ImagesyncError, StateError
from imagesync.images.download import Downloader, DownloadPolicy
from imagesync.model import DesiredImage, Held, Plan, TargetPolicy
from imagesync.run import fanout, lock, placement, unreached
from imagesync.run.execute import ActionResult, Executor, TargetRuntime
from imagesync.run.plan import diff
from imagesync.run.reconcile import reconcile
from imagesync.sources.base import Context, ImageLocation, Source, SourceOutcome
from imagesync.sources.collect import opened
from imagesync.state import open as state_open
from imagesync.state.lifecycle import TargetState
from imagesync.state.store import StateStore
from imagesync.targets import base as drivers
from imagesync.util.meters import NO_PROGRESS, Progress

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TargetStatus:
    name: str
    status: str
    error: str | None = None


@dataclass
class SyncResult:
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    lists: list[SourceOutcome] = field(default_factory=list)
    # The sources the lists came from, by name: they know where their images' bytes are.
    sources: dict[str, Source] = field(default_factory=dict)
    targets: list[TargetStatus] = field(default_factory=list)
    plan: Plan = field(default_factory=lambda: Plan(actions=()))
    results: list[ActionResult] = field(default_factory=list)
    bytes_downloaded: int = 0
    exit_code: int = EXIT_OK


class RunObserver(Protocol):
    """Told what a run (not a dry run) did as it goes: the events of :mod:`imagesync.notify.deliver`. Must not raise."""

    def lists_loaded(self, outcomes: list[SourceOutcome]) -> None: ...

    def action_done(self, result: ActionResult) -> None: ...


def sync(settings: Settings, *, dry_run: bool, lists: tuple[str, ...] = (), targets: tuple[str, ...] = (),
         clock: Callable[[], datetime] = utcnow,
         finish: Callable[[SyncResult, StateStore], None] | None = None,
         observer: RunObserver | None = None, progress: Progress = NO_PROGRESS,
         connect: Callable[[TargetSettings], drivers.Driver] = drivers.load) -> SyncResult:
    """One run. ``finish`` is called with the result and the state, still locked, once the run is recorded (the
    CLI writes the metrics there, DESIGN §1); ``observer`` hears of the lists and of each action, never in a dry
    run; ``progress`` shows downloads and uploads; ``connect`` makes a target's driver (the seam where tests put a
    fake). Raises LockHeldError (another run), StateError (state.db unusable), ConfigError (also for an unwritable
    state_dir or cache_dir, a missing or malformed projects_file), and what ``finish`` raises; everything else ends
    up in the result."""
    result = SyncResult(dry_run=dry_run, started_at=clock())
    chosen = [t for t in settings.targets if not targets or t.name in targets]
    preflight.require(settings, chosen, dry_run=dry_run)
    with ExitStack() as stack:
        if not dry_run:
            stack.enter_context(lock.acquire(settings.state_dir))
        store = stack.enter_context(open_state(settings, dry_run))
        run_id = None if dry_run else store.start_run(dry_run=False, at=result.started_at)
        runtimes, inventory = _gather_and_connect(settings, store, lists, chosen, result=result, stack=stack,
                                                  connect=connect)
        if observer is not None and not dry_run:
            observer.lists_loaded(result.lists)
        # The target is the truth: correct the state first, so the plan (dry or not) starts from what exists.
        reconcile(store, inventory, result.started_at)
        known = {name: [r.known() for r in store.target_images(target=name)] for name in runtimes}
        policies = [_policy(t) for t in chosen if t.name in runtimes]
        # With --list, images of the other lists are simply not part of this run (not "unconfigured").
        in_run = {o.settings.name for o in result.lists}
        planned = {t: [h for h in held if not lists or h.list_name in in_run] for t, held in inventory.items()}
        plan = diff([o.desire for o in result.lists], known, planned, now=result.started_at, targets=policies)
        notes = tuple(note for o in result.lists for note in o.desire.notes)
        result.plan = placement.place(replace(plan, notes=notes + plan.notes), runtimes, inventory)
        for note in result.plan.notes:
            log.warning("%s", note)
        missed = _unreached(store, result, chosen)
        if dry_run:
            result.results = placement.dry_results(result.plan) + missed
        else:
            _cleanup(runtimes)
            runnable, blocked = placement.split_blocked(result.plan)
            blocked += missed
            if observer is not None:
                for failed in blocked:  # planned failures (an unmapped VO) are done as soon as they are known
                    observer.action_done(failed)
            result.results, result.bytes_downloaded = _execute(settings, store, runtimes, runnable, clock,
                                                               sources=result.sources, observer=observer,
                                                               progress=progress)
            result.results += blocked
        result.exit_code = exit_code(result)
        result.finished_at = clock()
        if run_id is not None:
            _finish_run(store, run_id, result)
        if finish is not None:
            finish(result, store)
    return result


@contextmanager
def open_state(settings: Settings, dry_run: bool) -> Iterator[StateStore]:
    """The state for a run; a dry run gets a private snapshot, so not even a migration touches the real one.

    Raises StateError (a subclass saying why) when state.db cannot be used."""
    if not dry_run:
        with StateStore.open(settings.state_dir) as store:
            yield store
        return
    with tempfile.TemporaryDirectory(prefix="imagesync-dry-") as tmp:
        source = settings.state_dir / "state.db"
        if source.exists():
            state_open.snapshot(source, Path(tmp) / "state.db")
        with StateStore.open(Path(tmp)) as store:
            yield store


def _remembered(store: StateStore, chosen: list[TargetSettings]) -> dict[str, set[str]]:
    """Per target, the ids of the images the state remembers there (not deleted): what its inventory must find."""
    return {t.name: {r.target_id for r in store.target_images(target=t.name)
                     if r.target_id is not None and r.state != TargetState.DELETED} for t in chosen}


def _gather_and_connect(settings: Settings, store: StateStore, lists: tuple[str, ...], chosen: list[TargetSettings],
                        *, result: SyncResult, stack: ExitStack, connect: Callable[[TargetSettings], drivers.Driver],
                        ) -> tuple[dict[str, TargetRuntime], dict[str, list[Held]]]:
    """Fetch and verify the lists (into ``result.lists``) while the targets are reached and listed: a no-op run is
    little else, and the lists' time (about 50 ms for one list) then hides behind the Keystone token and the Glance
    listing (about 0.6 s on the dev cloud). Raises what either raises (ConfigError for a bad target setting,
    StateError), once both are over."""
    remembered = _remembered(store, chosen)
    context = Context(settings=settings, now=result.started_at, store=store, record=not result.dry_run)
    sources = stack.enter_context(opened(context, lists))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="connect") as pool:
        connecting = pool.submit(_connect, settings, chosen, result, stack, remembered, connect=connect)
        result.lists = [source.load() for source in sources]
        result.sources = {source.name: source for source in sources}
        return connecting.result()


def _connect(settings: Settings, chosen: list[TargetSettings], result: SyncResult, stack: ExitStack,
             remembered: dict[str, set[str]], *, connect: Callable[[TargetSettings], drivers.Driver],
             ) -> tuple[dict[str, TargetRuntime], dict[str, list[Held]]]:
    runtimes: dict[str, TargetRuntime] = {}
    inventory: dict[str, list[Held]] = {}
    begun = time.monotonic()  # deadlines count from here: the targets' part of the run starts with connecting
    for outcome in fanout.connect_all(chosen, width=settings.targets_concurrency, connect=connect,
                                      remembered=remembered):
        target, driver = outcome.target, outcome.driver
        if driver is None:
            result.targets.append(TargetStatus(target.name, "failed", outcome.error))
            continue
        stack.callback(driver.close)
        inventory[target.name] = outcome.held
        formats = target.disk_formats or driver.capabilities.formats
        deadline = begun + target.deadline.total_seconds() if target.deadline is not None else None
        runtimes[target.name] = TargetRuntime(driver=driver, formats=formats, uploads=target.upload_concurrency,
                                              deadline=deadline)
        result.targets.append(TargetStatus(target.name, "ok"))
    return runtimes, inventory


def _unreached(store: StateStore, result: SyncResult, chosen: list[TargetSettings]) -> list[ActionResult]:
    # The adds and updates an unreachable target misses, failed with its error (imagesync.run.unreached).
    errors = {t.name: t.error or "target failed" for t in result.targets if t.status == "failed"}
    known = {name: [r.known() for r in store.target_images(target=name)] for name in errors}
    return unreached.missed([o.desire for o in result.lists], known, errors, now=result.started_at,
                            targets=[_policy(t) for t in chosen if t.name in errors])


def _policy(target: TargetSettings) -> TargetPolicy:
    retire = target.retire
    return TargetPolicy(name=target.name, keep_versions=retire.keep_versions, retire_mode=retire.mode,
                        delete_after=retire.delete_after)


def _finish_run(store: StateStore, run_id: int, result: SyncResult) -> None:
    # The work is done and reported either way; only the run's own record is lost.
    try:
        store.finish_run(run_id, exit_code=result.exit_code, counts=summary(result), at=result.finished_at or utcnow())
    except StateError as exc:
        log.error("run=%d cannot record the end of this run: %s", run_id, exc.one_line())
        result.exit_code = max(result.exit_code, EXIT_PARTIAL)


def _cleanup(runtimes: dict[str, TargetRuntime]) -> None:
    for name, runtime in runtimes.items():
        try:
            for leftover in runtime.driver.cleanup():
                log.info("target=%s removed leftover %s of an interrupted run", name, leftover)
        except ImagesyncError as exc:
            log.warning("target=%s cleanup failed: %s", name, exc.one_line())


def _execute(settings: Settings, store: StateStore, runtimes: dict[str, TargetRuntime], plan: Plan,
             clock: Callable[[], datetime], *, sources: Mapping[str, Source], observer: RunObserver | None,
             progress: Progress) -> tuple[list[ActionResult], int]:
    d = settings.download
    policy = DownloadPolicy(concurrency=d.concurrency, retries=d.retries, timeout=d.timeout,
                            min_free_space=d.min_free_space, max_image_size=d.max_image_size,
                            allowed_networks=d.allowed_networks)
    ca_dir = settings.trust.ca_dir if settings.trust.ca_dir.is_dir() else None
    downloader = Downloader(settings.cache_dir, policy, ca_dir=ca_dir, progress=progress)
    try:
        executor = Executor(store=store, targets=runtimes, downloader=downloader, cache_dir=settings.cache_dir,
                            max_size=d.max_image_size, now=clock, locate=_locator(sources),
                            targets_concurrency=settings.targets_concurrency,
                            on_result=observer.action_done if observer is not None else None, progress=progress)
        return executor.run(plan), downloader.bytes_fetched
    finally:
        downloader.close()


def _locator(sources: Mapping[str, Source]) -> Callable[[DesiredImage], ImageLocation]:
    def locate(desired: DesiredImage) -> ImageLocation:
        source = sources.get(desired.list_name)
        # Every planned download comes from a source of this run; the URL alone serves if one ever does not.
        return source.locate(desired) if source is not None else ImageLocation(url=desired.image.uri)

    return locate


def exit_code(result: SyncResult) -> int:
    """DESIGN §2: 3 when nothing could be done, 1 when anything failed, else 0."""
    # A validly expired list was fetched and verified: its retirements are real work, not "nothing done".
    lists_ok = [o for o in result.lists if o.status != "failed" or o.desire.expired]
    targets_ok = [t for t in result.targets if t.status == "ok"]
    if (result.lists and not lists_ok) or (result.targets and not targets_ok):
        return EXIT_NOTHING_DONE
    failed = (any(o.status == "failed" or o.problems for o in result.lists) or len(targets_ok) < len(result.targets)
              or any(r.status == "failed" for r in result.results))
    return EXIT_PARTIAL if failed else EXIT_OK


def summary(result: SyncResult) -> dict[str, int]:
    counts = {kind: 0 for kind in ("add", "update", "update-metadata", "retire", "keep")}
    for item in result.results:
        if item.status != "failed":
            counts[item.action.kind] += 1
    counts["failed"] = sum(1 for r in result.results if r.status == "failed")
    counts["bytes_downloaded"] = result.bytes_downloaded
    counts["bytes_uploaded"] = sum(r.bytes_uploaded for r in result.results)
    # What the targets fetched from the image URLs themselves: bytes that never crossed this host.
    counts["bytes_pulled"] = sum(r.bytes_pulled for r in result.results)
    return counts
