"""The sources waiting for an event-started sync: coalesced per source, paced, and kept on disk.

One row per source, however many events named it: ``first`` (when the oldest unsynced event came), ``last`` (the
newest), how many, and ``seq``, the number of the newest (one counter over all sources, so it never goes back as a
wall clock may). A source is due once no event came for ``debounce`` (a burst of 20 pushes is one sync), or
``max_wait`` after its first event (a steady trickle still syncs), and never before ``not_before`` (a retry's
pause, which a new event ends: someone says "now" again). A run takes the due rows as they are and, when it is
over, removes each only if no event came since (its ``seq`` is unchanged): an event that arrives during the run
keeps its source waiting, and is debounced from the end of that run. Nothing is removed before a run ends, so a
``listen`` killed or restarted forgets nothing: the rows are still there when it starts again.

The rows live in ``listen-queue.db`` in the state directory, not in state.db: they are written by request
threads at any moment, while state.db is written only under the run lock and may be held by a long run (or by
cron's run, in another process); a webhook must not wait for either. The number of waiting sources is bounded
(``queue_limit``): a new source beyond it is refused (the sender retries), never dropped.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from imagesync.errors import StateError

NAME = "listen-queue.db"
_SCHEMA = """CREATE TABLE IF NOT EXISTS waiting (
    source TEXT PRIMARY KEY, first REAL NOT NULL, last REAL NOT NULL, events INTEGER NOT NULL, seq INTEGER NOT NULL,
    not_before REAL NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0)"""


class QueueFull(Exception):
    """No room for one more waiting source."""


@dataclass(frozen=True)
class Waiting:
    source: str
    first: float  # seconds since the epoch: rows outlive the process, so no monotonic clock
    last: float
    events: int
    seq: int  # the number of its newest event: a run removes the row only if this did not change meanwhile
    not_before: float = 0.0
    retries: int = 0  # failed syncs of these events so far

    def due_at(self, debounce: timedelta, max_wait: timedelta) -> float:
        paced = min(self.last + debounce.total_seconds(), self.first + max_wait.total_seconds())
        return max(paced, self.not_before)


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
                seq = self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM waiting").fetchone()[0]
                self._db.execute("INSERT INTO waiting (source, first, last, events, seq) VALUES (?, ?, ?, 1, ?) "
                                 "ON CONFLICT(source) DO UPDATE SET last = max(last, excluded.last), "
                                 "events = events + 1, seq = excluded.seq, not_before = 0, retries = 0",
                                 (source, at, at, seq))

    def waiting(self) -> list[Waiting]:
        """Every waiting source, oldest first. Raises StateError."""
        with self._lock, self._read():
            rows = self._db.execute("SELECT source, first, last, events, seq, not_before, retries FROM waiting "
                                    "ORDER BY first, source")
            return [Waiting(*row) for row in rows]

    def done(self, taken: Iterable[Waiting], ended: float) -> None:
        """Remove the rows a run took (as it took them) and synced, unless an event came since: then that event
        is debounced from ``ended``, the end of the run. Raises StateError."""
        with self._lock, self._write():
            for row in taken:
                self._db.execute("DELETE FROM waiting WHERE source = ? AND seq = ?", (row.source, row.seq))
                self._db.execute("UPDATE waiting SET first = max(first, ?), not_before = 0, retries = 0 "
                                 "WHERE source = ?", (ended, row.source))

    def retry(self, taken: Iterable[Waiting], not_before: float) -> None:
        """Keep the rows of a run that failed, due again at ``not_before``, one more retry counted. Raises
        StateError."""
        with self._lock, self._write():
            for row in taken:
                self._db.execute("UPDATE waiting SET not_before = ?, retries = ? WHERE source = ?",
                                 (not_before, row.retries + 1, row.source))

    def forget(self, sources: Iterable[str]) -> None:
        """Remove ``sources`` whatever came for them (no longer configured). Raises StateError."""
        with self._lock, self._write():
            self._db.executemany("DELETE FROM waiting WHERE source = ?", [(s,) for s in sources])

    def close(self) -> None:
        with self._lock:  # a request thread may still be inside add()
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
