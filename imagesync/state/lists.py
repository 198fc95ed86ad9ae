"""The ``lists`` table of the state store: what each list's last fetch brought and which copy was accepted.

Apart from :mod:`imagesync.state.store` because the lists are the sources' memory (validators, the accepted copy
and its created date, which only ever moves forward), while the rest of the store remembers images, their
records in targets and runs. :class:`imagesync.state.store.StateStore` offers these methods by inheritance.
"""

from __future__ import annotations

from datetime import datetime

from imagesync.errors import RollbackError
from imagesync.state.db import StateDB
from imagesync.state.records import ListRecord, list_record, ts
from imagesync.util import redact


class ListsTable(StateDB):
    """The methods reading and writing the ``lists`` table."""

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
