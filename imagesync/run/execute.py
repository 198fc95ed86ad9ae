"""Carrying out a plan: download once per image, convert per target, push, retire; record every step.

Each action is isolated (invariant 6): its failure is recorded and reported, the others go on. Within one
target, adds and updates run before retirements, and an update retires the versions it supersedes only once
the new version is active (invariant 3). When each action runs, and on which thread, is :mod:`imagesync.run.flow`'s
business: adds and updates run on upload threads, so every step here is thread-safe (the state store is).
An illegal lifecycle transition is a bug and is not caught here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from imagesync.errors import ImagesyncError
from imagesync.images import convert
from imagesync.images.download import Downloaded, Downloader
from imagesync.images.stream import file_sha512_memo
from imagesync.model import Action, DesiredImage, Plan, RetireMode
from imagesync.run import fanout, flow, pull
from imagesync.run.results import ActionResult, log_action
from imagesync.sources.base import ImageLocation
from imagesync.state.lifecycle import IllegalTransition, TargetState, allowed
from imagesync.state.store import StateStore, TargetImageRecord
from imagesync.targets.base import Driver, Upload
from imagesync.util import redact
from imagesync.util.logfields import fields
from imagesync.util.meters import NO_PROGRESS, Progress

log = logging.getLogger(__name__)
__all__ = ["ActionResult", "Executor", "TargetRuntime"]  # ActionResult lives in results; callers import it here
S = TargetState
Fetched = flow.Fetched
_FORWARD = (S.PENDING, S.DOWNLOADED, S.UPLOADING, S.ACTIVE)


@dataclass(frozen=True)
class TargetRuntime:
    """What the executor needs of one reachable target."""

    driver: Driver
    formats: tuple[str, ...]
    uploads: int = 1  # adds and updates pushed at once (the target's upload_concurrency)
    deadline: float | None = None  # time.monotonic() after which no action starts here (imagesync.run.fanout)


class Executor:
    def __init__(self, *, store: StateStore, targets: Mapping[str, TargetRuntime], downloader: Downloader,
                 cache_dir: Path, max_size: int, now: Callable[[], datetime],
                 on_result: Callable[[ActionResult], None] | None = None, progress: Progress = NO_PROGRESS,
                 locate: Callable[[DesiredImage], ImageLocation] | None = None, targets_concurrency: int = 4) -> None:
        """``on_result`` is told of each action as it completes (events; it must not raise); ``progress`` shows
        each upload; ``locate`` says where an image's bytes are (by default its URL); at most
        ``targets_concurrency`` targets are worked on at once."""
        self.store = store
        self.targets = targets
        self.downloader = downloader
        self.cache_dir = cache_dir
        self.max_size = max_size
        self.now = now
        self.on_result = on_result
        self.progress = progress
        self.locate = locate or (lambda desired: ImageLocation(url=desired.image.uri))
        self._telling = threading.Lock()
        self._lock = threading.Lock()
        self._converting: dict[str, threading.Lock] = {}
        self._gate = fanout.Gate(targets_concurrency, {name: t.deadline for name, t in targets.items()})

    def run(self, plan: Plan) -> list[ActionResult]:
        """Carry out every action of the plan whose target is reachable (in the order :mod:`imagesync.run.flow`
        gives); the results in the plan's order."""
        actions = [a for a in plan.actions if a.target in self.targets]
        lanes = {name: runtime.uploads for name, runtime in self.targets.items()}
        return flow.run(actions, downloader=self.downloader, lanes=lanes, transfer=self._isolated,
                        other=self._isolated, locate=self.locate, pulls=self._pulls)

    def _pulls(self, action: Action) -> bool:
        runtime = self.targets[action.target]
        return action.desired is not None and pull.pulls(action, runtime.driver, runtime.formats,
                                                         self.locate(action.desired))

    def _isolated(self, action: Action, fetched: Fetched | None = None) -> ActionResult:
        started = time.monotonic()
        try:
            result = self._gate.run(action, lambda: self._one(action, fetched), late=lambda: ActionResult(
                action, "failed", fanout.DEADLINE_PASSED, action.target_id))
        except IllegalTransition:
            raise
        except ImagesyncError as exc:
            result = ActionResult(action, "failed", redact.text(exc.one_line()), action.target_id)
        except Exception as exc:
            log.debug("unexpected error in %s", action, exc_info=True)
            result = ActionResult(action, "failed", redact.text(f"unexpected error: {type(exc).__name__}: {exc}"),
                                  action.target_id)
        log_action(result, seconds=time.monotonic() - started)
        if self.on_result is not None:
            with self._telling:  # upload threads finish side by side; observers see one result at a time
                self.on_result(result)
        return result

    def _one(self, action: Action, fetched: Fetched | None) -> ActionResult:
        if action.kind in ("add", "update"):
            return self._add(action, fetched)
        if action.kind == "update-metadata":
            return self._refresh(action)
        if action.kind == "retire":
            return self._retire(action)
        if action.adopt and action.target_id is not None:
            self._adopt(action, action.target_id)
        return ActionResult(action, "done", None, action.target_id)

    # -- add / update -------------------------------------------------------------------------------------

    def _add(self, action: Action, fetched: Fetched | None) -> ActionResult:
        assert action.desired is not None
        record = self._fresh_record(action)
        if not isinstance(fetched, (Downloaded, pull.Deferred)):
            error = fetched.one_line() if fetched is not None else "not downloaded"
            self._fail(record, error)
            return ActionResult(action, "failed", error)
        desired = self._seen(action.desired, fetched, record) if isinstance(fetched, Downloaded) else action.desired
        record = self._advance(record, S.DOWNLOADED)
        runtime = self.targets[action.target]
        def local() -> Upload:
            return self._prepared(action, desired, pull.got(fetched).path)

        fallback = pull.Fallback(local)
        # A target that pulls gets a remote upload even when the image was downloaded for another target: so
        # the report knows whether it used the bytes (its import failed) or fetched them itself.
        remote = isinstance(fetched, pull.Deferred) or self._pulls(action)
        try:
            upload = pull.remote(action, fallback) if remote else local()
            record = self._advance(record, S.UPLOADING)
            with self.progress.meter(f"upload {action.target}: {action.list_name}/{desired.image.identifier}",
                                     upload.size) as meter:
                target_id = runtime.driver.add(replace(upload, meter=meter))
        except (ImagesyncError, OSError) as exc:
            error = exc.one_line() if isinstance(exc, ImagesyncError) else f"{action.target}: {exc}"
            self._fail(record, error)
            return ActionResult(action, "failed", redact.text(error))
        sent, pulled = (0, upload.size) if remote and not fallback.used else (upload.size, 0)
        self.store.transition(record.id, S.ACTIVE, target_id=target_id, at=self.now())
        self._replaced_in_place(action.target, target_id, keep=record.id)
        # A target that names files by version (directory) overwrote a re-spun image in place: same id.
        failed = [e for e in (self._supersede(action, old) for old in action.supersedes if old != target_id) if e]
        if failed:
            return ActionResult(action, "failed", "new version active, but retiring the old one failed: " + failed[0],
                                target_id, sent, pulled)
        return ActionResult(action, "done", None, target_id, sent, pulled)

    def _prepared(self, action: Action, desired: DesiredImage, path: Path) -> Upload:
        """The verified bytes at ``path`` in a format the target accepts. Raises ConversionError, OSError."""
        image = desired.image
        with self._preparing(image.sha512):
            prepared = convert.prepare(path, sha512=image.sha512, accepted=self.targets[action.target].formats,
                                       cache_dir=self.cache_dir, name=f"{action.list_name}/{image.identifier}",
                                       max_size=self.max_size, declared=image.format)
        return Upload(desired=desired, path=prepared.path, disk_format=prepared.format,
                      virtual_size=prepared.virtual_size, size=prepared.path.stat().st_size,
                      sha512=image.sha512 if not prepared.converted else file_sha512_memo(prepared.path))

    def _seen(self, desired: DesiredImage, fetched: Downloaded, record: TargetImageRecord) -> DesiredImage:
        """The image with the sha512 of its verified bytes: a source that publishes none (an OCI registry) learns
        it here, and the state remembers it for the plans of later runs."""
        if desired.image.sha512:
            return desired
        self.store.remember_sha512(record.id, list_name=desired.list_name, identifier=desired.image.identifier,
                                   version=desired.image.version, sha512=fetched.sha512, at=self.now())
        return replace(desired, image=replace(desired.image, sha512=fetched.sha512))

    def _preparing(self, sha512: str) -> threading.Lock:
        """The lock of one image's conversion: two targets wanting the same format convert it once."""
        with self._lock:
            return self._converting.setdefault(sha512, threading.Lock())

    def _fresh_record(self, action: Action) -> TargetImageRecord:
        image = action.desired.image if action.desired else None
        assert image is not None
        record = self.store.new_target_image(target=action.target, list_name=action.list_name,
                                             identifier=image.identifier, version=image.version,
                                             sha512=image.sha512, at=self.now())
        if record.state in (S.ACTIVE, S.SUPERSEDED, S.RETIRED):
            # The plan adds what the target does not hold: this copy is gone (the target is the truth).
            self.store.transition(record.id, S.DELETED, at=self.now(), error="gone from the target")
            record = self.store.new_target_image(target=action.target, list_name=action.list_name,
                                                 identifier=image.identifier, version=image.version,
                                                 sha512=image.sha512, at=self.now())
        return record

    def _advance(self, record: TargetImageRecord, wanted: TargetState) -> TargetImageRecord:
        if record.state == wanted:
            return record
        if record.state == S.FAILED or record.state not in _FORWARD:
            return self.store.transition(record.id, wanted, at=self.now())
        for state in _FORWARD[_FORWARD.index(record.state) + 1: _FORWARD.index(wanted) + 1]:
            record = self.store.transition(record.id, state, at=self.now())
        return record

    def _fail(self, record: TargetImageRecord, error: str) -> None:
        if allowed(record.state, S.FAILED):
            self.store.transition(record.id, S.FAILED, error=error, at=self.now())
        else:
            self.store.record_error(record.id, error=error, at=self.now())

    # -- metadata, adoption, retirement ----------------------------------------------------------------------

    def _refresh(self, action: Action) -> ActionResult:
        assert action.desired is not None and action.target_id is not None
        record = self._record_of(action.target, action.target_id)
        reactivate = record is not None and record.state in (S.RETIRED, S.SUPERSEDED)
        self.targets[action.target].driver.update_metadata(action.target_id, action.desired,
                                                           reactivate=reactivate or action.adopt)
        if action.adopt or record is None:
            self._adopt(action, action.target_id)
        else:
            self.store.transition(record.id, S.ACTIVE, at=self.now())
        errors = [e for e in (self._supersede(action, old) for old in action.supersedes) if e]
        if errors:
            return ActionResult(action, "failed", "reactivated, but retiring the newer version failed: " + errors[0],
                                action.target_id)
        return ActionResult(action, "done", None, action.target_id)

    def _adopt(self, action: Action, target_id: str) -> None:
        image = action.desired.image if action.desired else None
        if image is None:
            return
        record = self.store.new_target_image(target=action.target, list_name=action.list_name,
                                             identifier=image.identifier, version=image.version,
                                             sha512=image.sha512, at=self.now())
        if record.state != S.ACTIVE:
            record = self._advance(record, S.UPLOADING) if record.state in _FORWARD else record
            self.store.transition(record.id, S.ACTIVE, target_id=target_id, at=self.now())

    def _retire(self, action: Action) -> ActionResult:
        assert action.target_id is not None
        error = self._retire_one(action, action.target_id, superseded=False)
        if error is not None:
            return ActionResult(action, "failed", error, action.target_id)
        return ActionResult(action, "done", None, action.target_id)

    def _supersede(self, action: Action, old_id: str) -> str | None:
        error = self._retire_one(action, old_id, superseded=True)
        if error is None:
            log.info("superseded version retired", extra=fields(
                list=action.list_name, image=action.identifier, target=action.target, action="retire",
                target_id=old_id, reason="superseded", result="done"))
        return error

    def _retire_one(self, action: Action, target_id: str, *, superseded: bool) -> str | None:
        """Retire one image in the target and record it; the one-line error if the target refused."""
        mode: RetireMode = action.retire_mode or "deactivate"
        record = self._record_of(action.target, target_id)
        try:
            self.targets[action.target].driver.retire(target_id, mode)
        except ImagesyncError as exc:
            if record is not None:
                self.store.record_error(record.id, error=exc.one_line(), at=self.now())
            return exc.one_line()
        if record is not None:
            if superseded and allowed(record.state, S.SUPERSEDED):
                record = self.store.transition(record.id, S.SUPERSEDED, at=self.now())
            self._record_retired(record, mode)
        return None

    def _replaced_in_place(self, target: str, target_id: str, *, keep: int) -> None:
        for old in self.store.target_images(target=target, target_id=target_id):
            if old.id != keep and allowed(old.state, S.DELETED):
                self.store.transition(old.id, S.DELETED, at=self.now(), error="replaced in place by new bytes")

    def _record_retired(self, record: TargetImageRecord, mode: RetireMode) -> None:
        new = S.DELETED if mode == "delete" else S.RETIRED
        if record.state != new and allowed(record.state, new):
            self.store.transition(record.id, new, at=self.now())

    def _record_of(self, target: str, target_id: str) -> TargetImageRecord | None:
        matches = [r for r in self.store.target_images(target=target, target_id=target_id) if r.state != S.DELETED]
        return max(matches, key=lambda r: r.id) if matches else None
