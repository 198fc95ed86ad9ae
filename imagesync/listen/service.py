"""``imagesync listen``: serve the endpoint in a thread and run the due syncs, one at a time, in the main thread.

The runner sleeps until the queue's next source is due (:mod:`imagesync.listen.queue`) or a request wakes it,
then runs one sync of every due source together, through the same code as ``imagesync sync --list NAME``: same
lock, same state, metrics, hooks and log. While cron's run (or any other) holds the lock, the sources stay
queued and the runner tries again every ``LOCK_RETRY`` seconds: a busy lock delays an event, never loses it. A
sync that fails is logged, counted and announced like any run's, and the endpoint stays up.

SIGTERM or SIGINT stops it: the endpoint closes at once; a sync under way is abandoned where it stands, as a
killed cron run would be (the lock is released, state.db holds only committed steps, the next run converges:
invariant 4), and the sources it was running stay queued for the next start. The run is given ``STOP_GRACE``
seconds to unwind (its worker threads finish their current call); then the process ends without waiting.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from imagesync.config.listen import ListenSettings
from imagesync.config.registries import source_names
from imagesync.config.settings import Settings
from imagesync.errors import EXIT_NOTHING_DONE, EXIT_OK, ConfigError, ImagesyncError, LockHeldError
from imagesync.listen.handler import Endpoint
from imagesync.listen.queue import Queue, Waiting
from imagesync.listen.server import Server, tls_context
from imagesync.util.textsafe import one_line

log = logging.getLogger(__name__)
LOCK_RETRY = 5.0
RETRIES = 3  # further tries of a sync that did nothing, after RETRY_PAUSE, then twice and four times as long
RETRY_PAUSE = 60.0
STOP_GRACE = 5.0  # seconds a signalled stop waits for the sync under way to unwind
_IDLE = 60.0  # longest sleep with nothing due: the queue file may have rows a request thread of another start left


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGINT, to leave a sync under way (not an Exception: nothing in
    the pipeline may catch it as a failure)."""


RunFn = Callable[[tuple[str, ...]], int]  # sources -> the run's exit code; raises LockHeldError when busy


@dataclass
class Runner:
    """Takes due sources off the queue and syncs them; its state is what ``/healthz`` shows."""

    settings: ListenSettings
    queue: Queue
    run: RunFn
    clock: Callable[[], float] = time.time
    running: tuple[str, ...] = ()
    last: dict[str, Any] | None = None
    stopping: bool = False
    busy: bool = False  # the lock was held by another run at the last try
    _wake: threading.Event = field(default_factory=threading.Event)

    def wake(self) -> None:
        self._wake.set()

    def health(self) -> dict[str, Any]:
        waiting = self.queue.waiting()
        return {"status": "stopping" if self.stopping else "ok", "waiting": [w.source for w in waiting],
                "running": list(self.running), "last_run": self.last}

    def loop(self) -> None:
        """Run due sources until :meth:`stop`. Raises Stopped when a signal ends a sync under way."""
        while not self.stopping:
            due, pause = self._due()
            if not due:
                self._sleep(pause)
                continue
            if not self._run_once(due):
                self._sleep(LOCK_RETRY)

    def stop(self) -> None:
        self.stopping = True
        self._wake.set()

    def _due(self) -> tuple[list[Waiting], float]:
        now = self.clock()
        at = [(w, w.due_at(self.settings.debounce, self.settings.max_wait)) for w in self.queue.waiting()]
        return [w for w, when in at if when <= now], min([_IDLE, *(when - now for _, when in at)])

    def _run_once(self, due: list[Waiting]) -> bool:
        """One sync of ``due``; False when the lock was busy (nothing taken off the queue)."""
        names = ",".join(w.source for w in due)
        self.running = tuple(w.source for w in due)
        log.info("listen sync sources=%s", names)
        try:
            code = self.run(self.running)
        except LockHeldError as exc:
            # Said once per busy spell, not every LOCK_RETRY seconds of a long cron run.
            log.log(logging.DEBUG if self.busy else logging.INFO, "listen sources=%s wait: %s; trying again "
                    "every %.0f s", names, exc.one_line(), LOCK_RETRY)
            self.busy = True
            return False
        except ImagesyncError as exc:
            code = exc.exit_code
            log.error("listen sync sources=%s failed: %s", names, exc.one_line())
        except Exception as exc:  # a bug in one run must not take the endpoint down with it
            code = EXIT_NOTHING_DONE
            log.error("listen sync sources=%s failed: unexpected %s: %s", names, type(exc).__name__,
                      one_line(str(exc)), exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            self.running = ()
        self.busy = False
        self._settle(due, code)
        self.last = {"sources": [w.source for w in due], "exit_code": code,
                     "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
        log.info("listen sync sources=%s finished exit=%d", names, code)
        return True

    def _settle(self, due: list[Waiting], code: int) -> None:
        # A run that did nothing at all (its list or registry unreachable, every target down, state.db unusable)
        # is tried again, later and later, a few times: an outage of minutes must not wait for the timer's run.
        # A partial run (exit 1) did what it could; what failed in it is the timer's to retry, as for any run.
        now = self.clock()
        retry = [w for w in due if code >= EXIT_NOTHING_DONE and w.retries < RETRIES]
        if retry:
            pause = RETRY_PAUSE * 2 ** min(w.retries for w in retry)
            self.queue.retry(retry, now + pause)
            log.warning("listen sync sources=%s did nothing (exit %d): trying again in %.0f s",
                        ",".join(w.source for w in retry), code, pause)
        given_up = [w for w in due if w not in retry]
        if code >= EXIT_NOTHING_DONE and given_up:
            log.error("listen sync sources=%s failed %d times in a row: left to the scheduled run",
                      ",".join(w.source for w in given_up), RETRIES + 1)
        self.queue.done(given_up, now)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(max(0.05, seconds))
        self._wake.clear()


def _abandon() -> None:
    log.warning("listen: the sync under way did not end within %.0f s of the signal; leaving it now", STOP_GRACE)
    logging.shutdown()
    os._exit(EXIT_OK)


@contextmanager
def stop_on_signals(runner: Runner) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT stop ``runner``: at once when idle, by raising Stopped in the main
    thread when a sync is under way. Restores the previous handlers on leaving."""

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("listen got %s: stopping", signal.Signals(signum).name)
        busy = bool(runner.running)
        runner.stop()
        if busy:
            # Unwinding waits for the run's worker threads; one may be inside a long upload. Past the grace
            # period the process ends as a killed run would: nothing of the state depends on the unwinding.
            watchdog = threading.Timer(STOP_GRACE, _abandon)
            watchdog.daemon = True
            watchdog.start()
            raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: Settings, run: RunFn, *, ready: Callable[[str], None] | None = None) -> None:
    """Listen on ``settings.listen`` and sync what events name through ``run`` until SIGTERM or SIGINT.
    ``ready`` is told the URL once the socket is bound. Raises ConfigError when listen is not configured,
    StateError when the queue cannot be opened, OSError when the address cannot be bound."""
    listen = settings.listen
    if not listen.configured:
        raise ConfigError("listen: not configured (give at least listen.secret_file)", subject=str(settings.source))
    queue = Queue(settings.state_dir, limit=listen.queue_limit)
    runner = Runner(listen, queue, run)
    names = source_names((item.name for item in settings.lists), settings.registries)
    _forget_unknown(queue, names)
    _warn_if_exposed(listen)
    endpoint = Endpoint(settings=listen, sources=names, registries=settings.registries, queue=queue,
                        wake=runner.wake, health=runner.health, clock=time.time)
    server = Server(endpoint, tls_context(listen))
    thread = threading.Thread(target=server.serve_forever, name="listen-http", daemon=True)
    try:
        with stop_on_signals(runner):
            thread.start()
            url = _url(server, listen)
            log.info("listen on %s; %d source(s) waiting from before", url, len(queue.waiting()))
            if ready is not None:
                ready(url)
            try:
                runner.loop()
            except Stopped:
                log.info("listen abandoned the sync under way; its sources stay queued")
    finally:
        if thread.is_alive():
            server.shutdown()
        server.server_close()
        queue.close()
    log.info("listen stopped")


def _url(server: Server, listen: ListenSettings) -> str:
    host = f"[{listen.address}]" if ":" in listen.address else listen.address
    return f"{'https' if listen.tls_cert else 'http'}://{host}:{server.server_address[1]}"


def _forget_unknown(queue: Queue, names: list[str]) -> None:
    # Queued before a configuration change that removed (or renamed) the source: nothing to sync any more.
    gone = [w.source for w in queue.waiting() if w.source not in names]
    if gone:
        log.warning("listen drops queued sources no longer configured: %s", ",".join(gone))
        queue.forget(gone)


def _warn_if_exposed(listen: ListenSettings) -> None:
    try:
        local = ipaddress.ip_address(listen.address).is_loopback
    except ValueError:
        local = listen.address == "localhost"
    if not local and listen.tls_cert is None:
        log.warning("listen on %s without tls_cert: a bearer secret crosses the network in clear (prefer the "
                    "X-Imagesync-Signature header, or TLS)", listen.address)
