"""The rows of the state database as frozen records, and the conversions between rows and records.

Times are stored as fixed-width ISO-8601 UTC strings, so they also sort as times.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from imagesync.model import Known, ListState
from imagesync.state.lifecycle import TargetState
from imagesync.util import redact


@dataclass(frozen=True)
class ListRecord:
    name: str
    url: str
    etag: str | None
    last_modified: str | None
    raw: bytes | None  # the last verified signed copy, re-verified when the server answers 304
    identifier: str | None
    created: datetime | None  # of the last accepted copy: what rollback protection compares with
    expires: datetime | None
    signer_dn: str | None
    signer_ca: str | None
    status: ListState | None
    error: str | None
    fetched_at: datetime | None
    accepted_at: datetime | None
    accepted_url: str | None = None  # the (redacted) URL ``created`` and ``raw`` were accepted from

    def cache_for(self, url: str) -> tuple[str | None, str | None, bytes] | None:
        """(etag, last_modified, raw) for a conditional GET of ``url``, or None when a full GET is needed.

        Validators are only worth sending when the stored copy they stand for came from that same URL.
        """
        if self.raw is None or self.accepted_url != redact.url(url):
            return None
        return self.etag, self.last_modified, self.raw


@dataclass(frozen=True)
class ImageRecord:
    list_name: str
    identifier: str
    version: str
    sha512: str
    size: int
    uri: str
    title: str | None
    attributes_json: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class TargetImageRecord:
    id: int
    target: str
    list_name: str
    identifier: str
    version: str
    sha512: str
    state: TargetState
    target_id: str | None
    projects: tuple[str, ...]
    error: str | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None

    def known(self) -> Known:
        """This record as the planner sees it."""
        return Known(record_id=self.id, list_name=self.list_name, identifier=self.identifier, version=self.version,
                     sha512=self.sha512, state=self.state.value, target_id=self.target_id, retired_at=self.retired_at)


@dataclass(frozen=True)
class RunRecord:
    id: int
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    counts: Mapping[str, int]


def ts(value: datetime | None) -> str | None:
    """Fixed-width ISO-8601 UTC, so stored strings also sort as times. Raises ValueError on naive datetimes."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the state store; pass an aware one")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _req_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def redacted_text(value: str | None) -> str | None:
    """``value`` with secrets removed, for free text that is stored."""
    return None if value is None else redact.text(value)


def list_record(row: sqlite3.Row) -> ListRecord:
    """A ``lists`` row as a record."""
    return ListRecord(
        name=row["name"], url=row["url"], etag=row["etag"], last_modified=row["last_modified"], raw=row["raw"],
        identifier=row["identifier"], created=_dt(row["created"]), expires=_dt(row["expires"]),
        signer_dn=row["signer_dn"], signer_ca=row["signer_ca"], status=row["status"], error=row["error"],
        fetched_at=_dt(row["fetched_at"]), accepted_at=_dt(row["accepted_at"]), accepted_url=row["accepted_url"])


def image_record(row: sqlite3.Row) -> ImageRecord:
    """An ``images`` row as a record."""
    return ImageRecord(
        list_name=row["list_name"], identifier=row["identifier"], version=row["version"], sha512=row["sha512"],
        size=row["size"], uri=row["uri"], title=row["title"], attributes_json=row["attributes_json"],
        first_seen=_req_dt(row["first_seen"]), last_seen=_req_dt(row["last_seen"]))


def target_record(row: sqlite3.Row) -> TargetImageRecord:
    """A ``target_images`` row as a record. Raises ValueError for an unknown state."""
    return TargetImageRecord(
        id=row["id"], target=row["target"], list_name=row["list_name"], identifier=row["identifier"],
        version=row["version"], sha512=row["sha512"], state=TargetState(row["state"]), target_id=row["target_id"],
        projects=tuple(json.loads(row["projects"])), error=row["error"], created_at=_req_dt(row["created_at"]),
        updated_at=_req_dt(row["updated_at"]), retired_at=_dt(row["retired_at"]))


def run_record(row: sqlite3.Row) -> RunRecord:
    """A ``runs`` row as a record."""
    return RunRecord(id=row["id"], dry_run=bool(row["dry_run"]), started_at=_req_dt(row["started_at"]),
                     finished_at=_dt(row["finished_at"]), exit_code=row["exit_code"],
                     counts=json.loads(row["counts"]) if row["counts"] else {})

