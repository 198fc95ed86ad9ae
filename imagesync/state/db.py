"""The transaction and reading machinery every part of the state store builds on.

Apart from :mod:`imagesync.state.store` so the tables' methods (lists in :mod:`imagesync.state.lists`, images,
target images and runs in the store) share one definition of a step: one connection guarded by one re-entrant
lock, ``BEGIN IMMEDIATE`` per outermost step, nested steps joining it, sqlite's and the encoder's errors turned
into StateError. It opens nothing itself: :meth:`imagesync.state.store.StateStore.open` does.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from imagesync.errors import StateError, brief
from imagesync.state import open as state_open


class StateDB:
    """One connection to the state database and the steps written through it."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, busy_timeout: float = 0.0) -> None:
        self._conn = conn
        self.path = path
        self._depth = 0
        self._busy_timeout = busy_timeout
        # Upload threads record their own steps: one connection, so one thread at a time, a step's whole
        # transaction included (a reader must never see another thread's half-done step).
        self._guard = threading.RLock()

    @contextmanager
    def step(self) -> Iterator[None]:
        """One recorded step: every write inside commits together or not at all (nested steps join the outer).
        Thread-safe: other threads wait until the step is over.

        Raises StateError (a subclass saying why: locked by another process, damaged, no rights) when the
        database cannot be written, or when a value is not storable text; an exception inside rolls everything
        back. Callers' isolation (per list, per action) catches it like any other expected error.
        """
        with self._guard:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._transaction():
                yield

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through the step
            self._depth = 1
            yield
            self._conn.execute("COMMIT")
        except BaseException as error:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            unusable = self._unusable(error)
            if unusable is None:
                raise
            raise unusable from error
        finally:
            self._depth = 0

    def _unusable(self, error: BaseException) -> StateError | None:
        """The StateError a failed step raises for sqlite's and the encoder's errors; None for anything else."""
        if isinstance(error, sqlite3.Error):
            return state_open.classify(error, self.path, waited=self._busy_timeout)
        if isinstance(error, UnicodeError):  # a lone surrogate cannot be bound as TEXT
            return StateError(f"cannot store text that is not valid Unicode ({brief(error)})", subject=str(self.path))
        return None

    def _one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self._guard:
            return cast("sqlite3.Row | None", self._conn.execute(sql, tuple(args)).fetchone())

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._guard:
            return cast("list[sqlite3.Row]", self._conn.execute(sql, tuple(args)).fetchall())
