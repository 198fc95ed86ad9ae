"""Getting at ``state.db``: waiting for another process's lock, and telling apart why a database cannot be used.

Four situations reach us as the same ``sqlite3.DatabaseError`` yet need opposite remedies: a lock another process
holds (wait: the data is fine), a file that is no database, a damaged one (truncated or partly overwritten:
recover or restore it), and one this user may not open (fix the rights). Advice that suits one destroys good
state in another ("move it away" for a mere lock), so each gets its own error and hint, and none of them changes
the file.

How long to wait for a lock is ``$IMAGESYNC_STATE_BUSY_TIMEOUT`` (seconds, default 30): imagesync runs exclude
each other with the run lock, so what holds ``state.db`` is something else (an ``sqlite3`` shell, a copy job),
usually for moments; a cron run can afford half a minute, and says in a log line what it waits for.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from imagesync.errors import (
    ConfigError,
    StateAccessError,
    StateCorruptError,
    StateError,
    StateLockedError,
    brief,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_ENV = "IMAGESYNC_STATE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 30.0
_LOCKED = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_ACCESS = {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_AUTH}


def busy_timeout() -> float:
    """Seconds to wait for another process's lock on ``state.db``: ``$IMAGESYNC_STATE_BUSY_TIMEOUT`` or 30.

    Raises ConfigError when the variable is set to anything but a non-negative number.
    """
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 1e6:
        raise ConfigError(f"{BUSY_TIMEOUT_ENV}={raw!r}: not a number of seconds",
                          hint=f"unset it for the default of {DEFAULT_BUSY_TIMEOUT:g} s")
    return seconds


def wait_for_write_lock(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Return once no other process holds the write lock of ``conn``'s database, waiting up to ``timeout``
    seconds (logged first, so a stalled cron run explains itself); later statements wait as long.

    Raises sqlite3.OperationalError (SQLITE_BUSY) when it is still held, or whatever error reading the
    database's header raises (a file that is no database, a damaged one). Writes nothing.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        _probe(conn)
    except sqlite3.OperationalError as error:
        if _code(error) not in _LOCKED or timeout <= 0:
            raise
        log.warning("state=%s is locked by another process (not an imagesync run: those hold %s); waiting up "
                    "to %gs for it to finish", path, path.parent / "lock", timeout)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000):d}")
        _probe(conn)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000):d}")


def _probe(conn: sqlite3.Connection) -> None:
    # Taking and dropping the write lock changes nothing in the file, yet fails exactly when a write would.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")


def snapshot(source: Path, dest: Path) -> None:
    """Copy the last committed state of ``source`` (WAL included) into a new database at ``dest``.

    Reads through a read-only connection with SQLite's backup API, so the source is never written, and in WAL
    mode not even a writer holding the lock stops it. Raises StateError, a subclass saying why ``source``
    cannot be read (the source is named, never the copy).
    """
    timeout = busy_timeout()
    try:
        original = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error as error:
        raise classify(error, source, waited=timeout) from error
    try:
        copy = sqlite3.connect(dest)
        try:
            original.backup(copy)
        finally:
            copy.close()
    except sqlite3.Error as error:
        raise classify(error, source, waited=timeout) from error
    finally:
        original.close()


def classify(error: sqlite3.Error, path: Path, *, waited: float) -> StateError:
    """The StateError (a subclass saying why, with its remedy) for ``error`` met using the database ``path``."""
    code = _code(error)
    subject = str(path)
    if code in _LOCKED:
        return StateLockedError(
            f"locked by another process, still after waiting {waited:g}s", subject=subject,
            hint=f"not an imagesync run, those hold {path.parent / 'lock'} and stop at once: e.g. an sqlite3 shell "
                 f"inside a transaction, `fuser -v {path}` names it; the data is fine, run again once it is done")
    if code == sqlite3.SQLITE_NOTADB:
        return StateCorruptError(
            f"not an SQLite database ({brief(error)})", subject=subject,
            hint="check that state_dir is imagesync's own directory; if it is, restore state.db from a backup, "
                 "or move it aside to start with an empty state")
    if code == sqlite3.SQLITE_CORRUPT:
        return StateCorruptError(
            f"damaged ({brief(error)}: truncated or partly overwritten)", subject=subject,
            hint=f"keep the file; salvage it with `sqlite3 {path} .recover | sqlite3 {path}.recovered` and put "
                 "that in its place, or restore state.db from a backup")
    if code in _ACCESS:
        return StateAccessError(
            f"cannot open: {_os_reason(path, error)}", subject=subject,
            hint="give the user running imagesync read and write access to state_dir and the files in it; "
                 "nothing was changed")
    return StateError(f"cannot use the state database: {brief(error)}", subject=subject,
                      hint="nothing was changed; check the file system of state_dir")


def _code(error: sqlite3.Error) -> int:
    # The extended code (e.g. SQLITE_IOERR_SHORT_READ) carries the primary one in its low byte.
    return int(getattr(error, "sqlite_errorcode", None) or 0) & 0xFF


def _os_reason(path: Path, error: sqlite3.Error) -> str:
    """What the operating system says about opening the file (SQLite only says "unable to open")."""
    for target, flags in ((path, os.O_RDWR), (path.parent, os.O_RDONLY)):
        try:
            os.close(os.open(target, flags))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return exc.strerror or brief(exc)
        break
    return brief(error)
