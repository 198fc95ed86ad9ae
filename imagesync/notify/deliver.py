"""The events of one run, delivered to its hooks and webhooks (DESIGN §9) as the run goes.

When events fire:

- ``list-failed`` as soon as the lists are loaded, before any download;
- ``image-added``, ``image-updated``, ``image-retired`` as each action completes, done or failed, so a long run
  notifies progressively;
- ``run-finished`` last, after the run released its lock, with the exit code the process exits with (a metrics file
  that could not be written included). A run that stops early (``state.db`` unusable, an unexpected error) still
  sends it, with ``error`` set; a run turned away because another one holds the lock sends nothing.

A dry run (``plan``, ``sync --dry-run``) fires no events: nothing happened. Events are delivered in order on one
background thread, so a slow hook or receiver delays the next notification, not the sync; the command waits for
the deliveries (each bounded by ``hook_timeout`` or the webhook's timeout and retries) before it exits. Delivery
failures are logged and never change the exit code: the report and the exit code describe the sync.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from imagesync.config.events import EventSettings
from imagesync.config.settings import Settings
from imagesync.errors import EXIT_LOCKED, EXIT_PARTIAL, FetchError, ImagesyncError
from imagesync.notify import events, hooks
from imagesync.notify.events import Event
from imagesync.notify.webhooks import Sender
from imagesync.run.execute import ActionResult
from imagesync.run.pipeline import SyncResult
from imagesync.sources.base import SourceOutcome
from imagesync.util.logfields import fields

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """Turns what a run reports (a :class:`imagesync.run.pipeline.RunObserver`) into events and delivers them.

    Use as a context manager around the run: leaving it sends ``run-finished`` for a run that stopped early and
    waits for every delivery."""

    def __init__(self, settings: EventSettings, senders: list[Sender],
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._settings = settings
        self._senders = senders
        self._clock = clock
        self._started_at = clock()
        self._silent = not settings.hooks and not senders  # then no document is even built
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._finished = False

    @classmethod
    def for_run(cls, settings: Settings, *, dry_run: bool) -> Notifier:
        """The notifier of a run; one that delivers nothing for a dry run or when no hook or webhook is set.
        Raises nothing (webhooks whose TLS trust cannot be set up are logged at ERROR and left out)."""
        if dry_run or not settings.events.configured:
            return cls(EventSettings(), [])
        ca_dir = settings.trust.ca_dir if settings.trust.ca_dir.is_dir() else None
        try:
            senders = [Sender(hook, ca_dir=ca_dir) for hook in settings.events.webhooks]
        except FetchError as exc:
            log.error("webhooks disabled for this run", extra=_error(exc.one_line()))
            senders = []
        return cls(settings.events, senders)

    # -- what the run reports ------------------------------------------------------------------------------------

    def lists_loaded(self, outcomes: list[SourceOutcome]) -> None:
        """Queue ``list-failed`` for each list that failed. Raises nothing."""
        if self._silent:
            return
        for outcome in outcomes:
            self._post(events.for_list(outcome, now=self._clock()))

    def action_done(self, result: ActionResult) -> None:
        """Queue the event of a completed add, update or retire. Raises nothing."""
        if not self._silent:
            self._post(events.for_action(result, now=self._clock()))

    def finished(self, result: SyncResult) -> None:
        """Queue ``run-finished`` for a run with a result; ``result.exit_code`` must be final. Raises nothing."""
        self._finished = True
        if not self._silent:
            self._post(events.run_finished(result, exit_code=result.exit_code, now=self._clock()))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, Exception) and not self._finished and not self._silent:
            code = exc.exit_code if isinstance(exc, ImagesyncError) else EXIT_PARTIAL
            if code != EXIT_LOCKED:  # another run is at work: nothing went wrong, nothing to report
                error = exc.one_line() if isinstance(exc, ImagesyncError) else \
                    f"unexpected error: {type(exc).__name__}: {exc}"
                self._post(events.run_stopped(error, exit_code=code, started_at=self._started_at, now=self._clock()))
        # Interrupted (Ctrl-C): do not make the operator wait for notifications too.
        self.close(wait=not isinstance(exc, KeyboardInterrupt))

    def close(self, *, wait: bool = True) -> None:
        """Deliver what is queued (with ``wait``), then release the webhooks' connections. Raises nothing."""
        if self._thread is not None:
            self._queue.put(None)
            if not wait:
                return
            self._thread.join()
        for sender in self._senders:
            sender.close()

    # -- delivery --------------------------------------------------------------------------------------------------

    def _post(self, event: Event | None) -> None:
        if event is None or not self._wanted(event.kind):
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver_all, name="events", daemon=True)
            self._thread.start()
        self._queue.put(event)

    def _wanted(self, kind: str) -> bool:
        return self._settings.hook_for(kind) is not None or any(kind in s.hook.events for s in self._senders)

    def _deliver_all(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._deliver(event)
            except Exception:  # a bug here must not silence the rest of the run's events
                log.exception("event not delivered", extra=_error(f"unexpected error delivering {event.kind}"))

    def _deliver(self, event: Event) -> None:
        hook = self._settings.hook_for(event.kind)
        if hook is not None:
            hooks.run(hook.argv, event, timeout=self._settings.hook_timeout)
        for sender in self._senders:
            if sender.wants(event):
                sender.send(event)


def _error(message: str) -> dict[str, object]:
    return fields(result="failed", error=message)
