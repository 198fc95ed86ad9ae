"""Running one hook command for one event: argv (no shell), the JSON document on stdin, ``IMAGESYNC_EVENT_*``.

A hook gets a small, clean environment (PATH, HOME, the locale, TZ, TMPDIR, USER, LOGNAME) plus the event's
variables, not imagesync's own: that may hold ``OS_PASSWORD`` or a list token (``token_env``), which a notifier has
no business seeing (DESIGN invariant 7). Its stdout is discarded (it must not mix into a JSON report on ours); the
end of its stderr is quoted when it fails. It runs in a process group of its own, so a timeout kills whatever it
started too.

Outcomes are logged with the hook and the event named, and never raised: a notification that failed must not fail
the sync it reports on. A command that cannot be started (missing, not executable) is an ERROR, since it will fail
on every run until the configuration is fixed; a non-zero exit or a timeout is a WARNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

from imagesync.notify.events import Event
from imagesync.util import redact
from imagesync.util.logfields import fields
from imagesync.util.textsafe import one_line

log = logging.getLogger(__name__)
_PASSED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_REAP_SECONDS = 5.0  # after the kill, how long to wait for the pipes to close
_STDERR_TAIL = 300


def environment(event: Event, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a hook: the harmless part of ``base`` (default: ours) plus the event's variables.
    Raises nothing."""
    source = os.environ if base is None else base
    env = {key: value for key, value in source.items() if key in _PASSED or key.startswith("LC_")}
    env.setdefault("PATH", _DEFAULT_PATH)
    return {**env, **event.environment()}


def run(argv: tuple[str, ...], event: Event, *, timeout: float) -> bool:
    """Run ``argv`` for ``event``; True when it exited 0 within ``timeout`` seconds. Logs every failure, raises
    nothing."""
    about = {"hook": argv[0], "event": event.kind}
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=environment(event), start_new_session=True, close_fds=True)
    except OSError as exc:
        log.error("hook cannot start", extra=fields(**about, result="failed", error=exc.strerror or str(exc)))
        return False
    try:
        _, stderr = process.communicate(event.body(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        log.warning("hook timed out", extra=fields(**about, result="failed",
                                                   error=f"killed after {timeout:g} s (hook_timeout)"))
        return False
    if process.returncode != 0:
        log.warning("hook failed", extra=fields(**about, result="failed",
                                                error=_failure(process.returncode, stderr)))
        return False
    log.debug("hook ran", extra=fields(**about, result="done"))
    return True


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # Something outside the group (it made a session of its own) still holds the pipe: stop listening.
        if process.stderr is not None:
            process.stderr.close()
        process.wait()


def _failure(code: int, stderr: bytes) -> str:
    what = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    if lines:
        what = f"{what}: {lines[-1][-_STDERR_TAIL:]}"
    return one_line(redact.text(what))
