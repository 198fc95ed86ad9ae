"""The local state: SQLite at ``state_dir/state.db``, the memory of why (the target is the truth of what exists).

WAL journal (readers never block the single writer), ``synchronous=NORMAL`` (a power cut may lose the last
step but never corrupts), one transaction per recorded step, forward-only migrations counted in
``PRAGMA user_version`` (:mod:`imagesync.state.schema`; rows and records in :mod:`imagesync.state.records`).
Secrets never land here: URLs go through :func:`imagesync.util.redact.url` and free text (errors, image attributes)
through :func:`imagesync.util.redact.text`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import cast

from imagesync.model import Image
from imagesync.state import lifecycle
from imagesync.state import open as state_open
from imagesync.state.lifecycle import TargetState
from imagesync.state.lists import ListsTable
from imagesync.state.records import (
    ImageRecord,
    ListRecord,
    RunRecord,
    TargetImageRecord,
    image_record,
    redacted_text,
    run_record,
    target_record,
    ts,
)
from imagesync.state.schema import migrate
from imagesync.util import redact

# The records are part of StateStore's interface: importers take them from here.
__all__ = ["DB_NAME", "ImageRecord", "ListRecord", "RunRecord", "StateStore", "TargetImageRecord"]

DB_NAME = "state.db"


class StateStore(ListsTable):
    """The state database. Open with :meth:`open`; use as a context manager or call :meth:`close`.

    Steps and reads come from :class:`imagesync.state.db.StateDB`, the ``lists`` methods from
    :class:`imagesync.state.lists.ListsTable`; images, target images and runs are here.
    """

    @classmethod
    def open(cls, state_dir: Path, *, busy_timeout: float | None = None) -> StateStore:
        """Open (creating and migrating as needed) ``state_dir/state.db``.

        ``busy_timeout`` is how long to wait for another process's lock (default: :func:`state_open.busy_timeout`).
        Raises StateError when the database cannot be used, leaving the file as it was: StateLockedError
        (another process holds it), StateCorruptError (no database, or a damaged one), StateAccessError (this
        user's rights), StateError itself otherwise (I/O error, a schema newer than this code); ConfigError for a
        bad ``$IMAGESYNC_STATE_BUSY_TIMEOUT``; OSError when the directory cannot be created.
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        timeout = state_open.busy_timeout() if busy_timeout is None else busy_timeout
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=timeout, check_same_thread=False)
            _configure(conn, path, timeout)
            migrate(conn)
        except BaseException as error:
            if conn is not None:
                conn.close()
            if isinstance(error, sqlite3.Error):
                raise state_open.classify(error, path, waited=timeout) from error
            raise
        conn.row_factory = sqlite3.Row
        return cls(conn, path, busy_timeout=timeout)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- images -----------------------------------------------------------------------------------------

    def upsert_image(self, list_name: str, image: Image, *, at: datetime) -> None:
        """Remember ``image`` of ``list_name`` (keyed by list, identifier, version). Raises StateError."""
        attributes = redact.text(json.dumps(image.attributes, sort_keys=True, default=str))
        with self.step():
            self._conn.execute(
                "INSERT INTO images (list_name, identifier, version, sha512, size, uri, title, attributes_json,"
                " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (list_name, identifier, version) DO UPDATE SET sha512 = excluded.sha512,"
                " size = excluded.size, uri = excluded.uri, title = excluded.title,"
                " attributes_json = excluded.attributes_json, last_seen = excluded.last_seen",
                (list_name, image.identifier, image.version, image.sha512, image.size, redact.url(image.uri),
                 image.title, attributes, ts(at), ts(at)))

    def images(self, list_name: str | None = None) -> list[ImageRecord]:
        """Known images, of one list or all, ordered by list, identifier, version."""
        rows = self._all("SELECT * FROM images WHERE ?1 IS NULL OR list_name = ?1"
                         " ORDER BY list_name, identifier, version", (list_name,))
        return [image_record(row) for row in rows]

    # -- target images ----------------------------------------------------------------------------------

    def new_target_image(self, *, target: str, list_name: str, identifier: str, version: str, sha512: str,
                         at: datetime) -> TargetImageRecord:
        """A pending record for this image in ``target``, or the live one that already exists (idempotent).

        Raises StateError on write failure.
        """
        with self.step():
            live = self.find_target_image(target=target, list_name=list_name, identifier=identifier,
                                          version=version, sha512=sha512)
            if live is not None:
                return live
            cursor = self._conn.execute(
                "INSERT INTO target_images (target, list_name, identifier, version, sha512, state, projects,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?)",
                (target, list_name, identifier, version, sha512, TargetState.PENDING.value, ts(at), ts(at)))
            return self._target_image(cast(int, cursor.lastrowid))

    def transition(self, record_id: int, new_state: TargetState, *, at: datetime, target_id: str | None = None,
                   projects: Iterable[str] | None = None, error: str | None = None) -> TargetImageRecord:
        """Move record ``record_id`` to ``new_state``.

        ``error`` describes this step (None clears the previous one, so leaving ``failed`` clears it);
        ``target_id`` and ``projects`` are kept unless given. Raises IllegalTransition (a bug) for a
        transition the lifecycle refuses, KeyError for an unknown record, StateError on write failure.
        """
        with self.step():
            current = self._target_image(record_id)
            lifecycle.check(current.state, new_state)
            retired_at = current.retired_at
            if new_state is TargetState.RETIRED and current.state is not TargetState.RETIRED:
                retired_at = at
            elif new_state in (TargetState.ACTIVE, TargetState.PENDING):
                retired_at = None
            self._conn.execute(
                "UPDATE target_images SET state = ?, target_id = ?, projects = ?, error = ?, updated_at = ?,"
                " retired_at = ? WHERE id = ?",
                (new_state.value, current.target_id if target_id is None else target_id,
                 json.dumps(list(current.projects if projects is None else projects)), redacted_text(error),
                 ts(at), ts(retired_at), record_id))
            return self._target_image(record_id)

    def record_error(self, record_id: int, *, error: str, at: datetime) -> TargetImageRecord:
        """Note a failure that leaves the record's state as it is (a retirement or refresh that did not go
        through). Raises KeyError for an unknown record, StateError on write failure."""
        with self.step():
            self._target_image(record_id)
            self._conn.execute("UPDATE target_images SET error = ?, updated_at = ? WHERE id = ?",
                               (redact.text(error), ts(at), record_id))
            return self._target_image(record_id)

    def remember_sha512(self, record_id: int, *, list_name: str, identifier: str, version: str, sha512: str,
                        at: datetime) -> None:
        """The sha512 of an image whose source publishes none, once its bytes were verified: on the record and on
        the image, so later plans compare it with what the target holds. Raises StateError on write failure."""
        with self.step():
            self._conn.execute("UPDATE target_images SET sha512 = ?, updated_at = ? WHERE id = ? AND sha512 = ''",
                               (sha512, ts(at), record_id))
            self._conn.execute("UPDATE images SET sha512 = ? WHERE list_name = ? AND identifier = ? AND version = ?"
                               " AND sha512 = ''", (sha512, list_name, identifier, version))

    def get_target_image(self, record_id: int) -> TargetImageRecord | None:
        """Record ``record_id``, or None."""
        row = self._one("SELECT * FROM target_images WHERE id = ?", (record_id,))
        return None if row is None else target_record(row)

    def _target_image(self, record_id: int) -> TargetImageRecord:
        record = self.get_target_image(record_id)
        if record is None:
            raise KeyError(f"no target image record {record_id}")
        return record

    def target_images(self, *, target: str | None = None, list_name: str | None = None,
                      states: Iterable[TargetState] | None = None,
                      target_id: str | None = None) -> list[TargetImageRecord]:
        """Target image records matching every filter given, oldest first.

        ``target_id`` (the image's id in its target) picks the few records of one image in SQL: per action, that is
        what the executor needs, and building every record of a target per action costs time quadratic in its size.
        """
        wanted = None if states is None else json.dumps([TargetState(s).value for s in states])
        rows = self._all(
            "SELECT * FROM target_images WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR list_name = ?2)"
            " AND (?3 IS NULL OR state IN (SELECT value FROM json_each(?3))) AND (?4 IS NULL OR target_id = ?4)"
            " ORDER BY id",
            (target, list_name, wanted, target_id))
        return [target_record(row) for row in rows]

    def find_target_image(self, *, target: str, list_name: str, identifier: str, version: str,
                          sha512: str | None = None) -> TargetImageRecord | None:
        """The live (not deleted) record of this image (of these bytes, given ``sha512``) in ``target``, or None."""
        row = self._one(
            "SELECT * FROM target_images WHERE target = ? AND list_name = ? AND identifier = ? AND version = ?"
            " AND (? IS NULL OR sha512 = ?) AND state <> ? ORDER BY id DESC LIMIT 1",
            (target, list_name, identifier, version, sha512, sha512, TargetState.DELETED.value))
        return None if row is None else target_record(row)

    # -- runs -------------------------------------------------------------------------------------------

    def start_run(self, *, dry_run: bool, at: datetime) -> int:
        """Record the start of a run; returns its id. Raises StateError on write failure."""
        with self.step():
            cursor = self._conn.execute("INSERT INTO runs (dry_run, started_at) VALUES (?, ?)",
                                        (int(dry_run), ts(at)))
            return cast(int, cursor.lastrowid)

    def finish_run(self, run_id: int, *, exit_code: int, counts: Mapping[str, int], at: datetime) -> None:
        """Record the end of run ``run_id``. Raises KeyError for an unknown run, StateError on write failure."""
        with self.step():
            cursor = self._conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, counts = ? WHERE id = ?",
                (ts(at), exit_code, json.dumps(dict(counts), sort_keys=True), run_id))
            if cursor.rowcount != 1:
                raise KeyError(f"no run {run_id}")

    def last_runs(self, n: int) -> list[RunRecord]:
        """The ``n`` most recent runs, newest first."""
        return [run_record(row) for row in self._all("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (n,))]

    def last_success(self) -> datetime | None:
        """When the most recent run that ended with exit code 0 finished, or None if none did."""
        row = self._one("SELECT * FROM runs WHERE exit_code = 0 AND dry_run = 0 AND finished_at IS NOT NULL"
                        " ORDER BY id DESC LIMIT 1")
        return None if row is None else run_record(row).finished_at


def _configure(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    state_open.wait_for_write_lock(conn, path, timeout)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.DatabaseError(f"cannot switch to WAL journal mode (got {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
