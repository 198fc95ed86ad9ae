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
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from imagesync.errors import RollbackError, StateError, brief
from imagesync.model import Image
from imagesync.state import lifecycle
from imagesync.state import open as state_open
from imagesync.state.lifecycle import TargetState
from imagesync.state.records import (
    ImageRecord,
    ListRecord,
    RunRecord,
    TargetImageRecord,
    image_record,
    list_record,
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


class StateStore:
    """The state database. Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, busy_timeout: float = 0.0) -> None:
        self._conn = conn
        self.path = path
        self._depth = 0
        self._busy_timeout = busy_timeout
        # Upload threads record their own steps: one connection, so one thread at a time, a step's whole
        # transaction included (a reader must never see another thread's half-done step).
        self._guard = threading.RLock()

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

    # -- lists ------------------------------------------------------------------------------------------

    def get_list(self, name: str) -> ListRecord | None:
        """The stored record of list ``name``, or None if never seen."""
        row = self._one("SELECT * FROM lists WHERE name = ?", (name,))
        return None if row is None else list_record(row)

    def lists(self) -> list[ListRecord]:
        """Every list the state knows, by name."""
        return [list_record(row) for row in self._all("SELECT * FROM lists ORDER BY name")]

    def previous_created(self, name: str, *, url: str) -> datetime | None:
        """The created date a new copy of ``name`` fetched from ``url`` must not be older than (rollback)."""
        record = self.get_list(name)
        if record is None or record.accepted_url != redact.url(url):
            return None
        return record.created

    def record_list_ok(self, name: str, *, url: str, etag: str | None, last_modified: str | None, raw: bytes,
                       identifier: str, created: datetime, expires: datetime, signer_dn: str | None,
                       signer_ca: str | None, unchanged: bool, at: datetime) -> None:
        """Record a verified, accepted copy of list ``name`` with its validators.

        Raises RollbackError (and stores nothing) if ``created`` is older than the copy accepted before from
        the same URL: the accepted created date only ever moves forward. Raises StateError on write failure.
        """
        clean = redact.url(url)
        with self.step():
            before = self.get_list(name)
            if before and before.accepted_url == clean and before.created and created < before.created:
                raise RollbackError(f"created {created.isoformat()} is older than the accepted copy's "
                                    f"{before.created.isoformat()}", subject=name)
            self._conn.execute(
                "INSERT INTO lists (name, url, etag, last_modified, raw, identifier, created, expires, signer_dn,"
                " signer_ca, status, error, fetched_at, accepted_at, accepted_url)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET url = excluded.url, etag = excluded.etag,"
                " last_modified = excluded.last_modified, raw = excluded.raw, identifier = excluded.identifier,"
                " created = excluded.created, expires = excluded.expires, signer_dn = excluded.signer_dn,"
                " signer_ca = excluded.signer_ca, status = excluded.status, error = NULL,"
                " fetched_at = excluded.fetched_at, accepted_at = excluded.accepted_at,"
                " accepted_url = excluded.accepted_url",
                (name, clean, etag, last_modified, raw, identifier, ts(created), ts(expires), signer_dn,
                 signer_ca, "unchanged" if unchanged else "ok", ts(at), ts(at), clean))

    def record_source_ok(self, name: str, *, url: str, raw: bytes, identifier: str, signer_dn: str | None,
                         unchanged: bool, at: datetime) -> None:
        """Record what a source without dates (an OCI registry) accepted: ``raw`` is its own memory of it.
        Raises StateError on write failure."""
        clean = redact.url(url)
        with self.step():
            self._conn.execute(
                "INSERT INTO lists (name, url, raw, identifier, signer_dn, status, error, fetched_at, accepted_at,"
                " accepted_url) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET url = excluded.url, raw = excluded.raw,"
                " identifier = excluded.identifier, signer_dn = excluded.signer_dn, status = excluded.status,"
                " error = NULL, fetched_at = excluded.fetched_at, accepted_at = excluded.accepted_at,"
                " accepted_url = excluded.accepted_url",
                (name, clean, raw, identifier, signer_dn, "unchanged" if unchanged else "ok", ts(at), ts(at), clean))

    def record_list_failed(self, name: str, *, url: str, error: str, at: datetime) -> None:
        """Record a failed fetch/verify/parse; the accepted copy, its created date and validators stay.

        Raises StateError on write failure.
        """
        with self.step():
            self._conn.execute(
                "INSERT INTO lists (name, url, status, error, fetched_at) VALUES (?, ?, 'failed', ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET url = excluded.url, status = 'failed', error = excluded.error,"
                " fetched_at = excluded.fetched_at",
                (name, redact.url(url), redact.text(error), ts(at)))

    def record_validators(self, name: str, *, url: str, etag: str | None, last_modified: str | None,
                          at: datetime) -> None:
        """Store only the HTTP validators (what a dry run may keep).

        New validators no longer describe the stored copy, so that copy is dropped: a later 304 must never make
        us re-use an older list than the one the server has. Raises StateError on write failure.
        """
        with self.step():
            self._conn.execute(
                "INSERT INTO lists (name, url, etag, last_modified, fetched_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET url = excluded.url, fetched_at = excluded.fetched_at,"
                " raw = CASE WHEN etag IS excluded.etag AND last_modified IS excluded.last_modified"
                " THEN raw ELSE NULL END, etag = excluded.etag, last_modified = excluded.last_modified",
                (name, redact.url(url), etag, last_modified, ts(at)))

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
