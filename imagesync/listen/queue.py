"""The sources waiting for an event-started sync: coalesced per source, paced, and kept on disk.

One row per source, however many events named it: ``first`` (when the oldest unsynced event came), ``last`` (the
newest) and how many. A source is due once no event came for ``debounce`` (a burst of 20 pushes is one sync), or
``max_wait`` after its first event (a steady trickle still syncs). A run takes the due sources at an instant and,
when it is over, removes each only if no event came after that instant: an event that arrives during the run
keeps its source waiting for the next one. Nothing is removed before a run ends, so a ``listen`` killed or
restarted forgets nothing: the rows are still there when it starts again.

The rows live in ``listen-queue.db`` in the state directory, not in state.db: they are written by request
threads at any moment, while state.db is written only under the run lock and may be held by a long run (or by
cron's run, in another process); a webhook must not wait for either. The number of waiting sources is bounded
(``queue_limit``): a new source beyond it is refused (the sender retries), never dropped.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from imagesync.errors import StateError

NAME = "listen-queue.db"
_SCHEMA = """CREATE TABLE IF NOT EXISTS waiting (
    source TEXT PRIMARY KEY, first REAL NOT NULL, last REAL NOT NULL, events INTEGER NOT NULL)"""


class QueueFull(Exception):
    """No room for one more waiting source."""


@dataclass(frozen=True)
class Waiting:
    source: str
    first: float  # seconds since the epoch: rows outlive the process, so no monotonic clock
    last: float
    events: int

    def due_at(self, debounce: timedelta, max_wait: timedelta) -> float:
        return min(self.last + debounce.total_seconds(), self.first + max_wait.total_seconds())


class Queue:
    """The waiting sources of one state directory; safe to use from several threads."""

    def __init__(self, state_dir: Path, *, limit: int) -> None:
        """Open (or create) the queue. Raises StateError when the file cannot be used."""
        self._limit = limit
        self._lock = threading.Lock()
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(state_dir / NAME, timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the event queue {state_dir / NAME}: {exc}") from None

    def add(self, sources: list[str], at: float) -> None:
        """Note an event for each of ``sources`` at ``at``. Raises QueueFull (nothing added) when a new source
        would pass the limit, StateError when the file cannot be written."""
        with self._lock, self._write():
            present = {row[0] for row in self._db.execute("SELECT source FROM waiting")}
            if len(present | set(sources)) > self._limit:
                raise QueueFull(f"{len(present)} sources already waiting (queue_limit {self._limit})")
            for source in sources:
                self._db.execute("INSERT INTO waiting VALUES (?, ?, ?, 1) ON CONFLICT(source) DO UPDATE SET "
                                 "last = max(last, excluded.last), events = events + 1", (source, at, at))

    def waiting(self) -> list[Waiting]:
        """Every waiting source, oldest first. Raises StateError."""
        with self._lock, self._read():
            rows = self._db.execute("SELECT source, first, last, events FROM waiting ORDER BY first, source")
            return [Waiting(*row) for row in rows]

    def done(self, sources: list[str], taken: float) -> None:
        """Remove ``sources``, synced by a run that took them at ``taken``, unless an event came later. Raises
        StateError."""
        with self._lock, self._write():
            self._db.executemany("DELETE FROM waiting WHERE source = ? AND last <= ?", [(s, taken) for s in sources])

    def close(self) -> None:
        self._db.close()

    def _write(self) -> _Transaction:
        return _Transaction(self._db, "BEGIN IMMEDIATE")

    def _read(self) -> _Transaction:
        return _Transaction(self._db, "BEGIN")


class _Transaction:
    """One SQLite transaction; a database error becomes StateError naming the queue."""

    def __init__(self, db: sqlite3.Connection, begin: str) -> None:
        self._db = db
        self._begin = begin

    def __enter__(self) -> None:
        try:
            self._db.execute(self._begin)
        except sqlite3.Error as exc:
            raise StateError(f"event queue: {exc}") from None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if kind is not None else "COMMIT")
        except sqlite3.Error as error:
            if kind is None:
                raise StateError(f"event queue: {error}") from None
        if isinstance(exc, sqlite3.Error):
            raise StateError(f"event queue: {exc}") from None
