"""The state database's schema: forward-only migrations counted in ``PRAGMA user_version``.

A released migration is never edited, a change is a new one appended. Each runs in its own transaction together
with its ``user_version`` bump, so a crash leaves the DB at the previous version.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from imagesync.errors import StateError


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "lists, images, target images, runs", (
        "CREATE TABLE lists (name TEXT PRIMARY KEY, url TEXT NOT NULL, etag TEXT, last_modified TEXT, raw BLOB,"
        " identifier TEXT, created TEXT, expires TEXT, signer_dn TEXT, signer_ca TEXT,"
        " status TEXT CHECK (status IN ('ok', 'unchanged', 'failed')), error TEXT, fetched_at TEXT,"
        " accepted_at TEXT, accepted_url TEXT)",
        "CREATE TABLE images (list_name TEXT NOT NULL, identifier TEXT NOT NULL, version TEXT NOT NULL,"
        " sha512 TEXT NOT NULL, size INTEGER NOT NULL, uri TEXT NOT NULL, title TEXT,"
        " attributes_json TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,"
        " PRIMARY KEY (list_name, identifier, version))",
        "CREATE TABLE target_images (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,"
        " list_name TEXT NOT NULL, identifier TEXT NOT NULL, version TEXT NOT NULL, sha512 TEXT NOT NULL,"
        " state TEXT NOT NULL CHECK (state IN ('pending', 'downloaded', 'uploading', 'active', 'superseded',"
        " 'retired', 'deleted', 'failed')), target_id TEXT, projects TEXT NOT NULL DEFAULT '[]', error TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, retired_at TEXT)",
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, dry_run INTEGER NOT NULL,"
        " started_at TEXT NOT NULL, finished_at TEXT, exit_code INTEGER, counts TEXT)",
    )),
    Migration(2, "at most one live record per image and target; lookup indexes", (
        # Idempotency (invariant 4) enforced by the database too, not only by new_target_image.
        "CREATE UNIQUE INDEX target_images_live ON target_images (target, list_name, identifier, version)"
        " WHERE state <> 'deleted'",
        "CREATE INDEX target_images_by_list ON target_images (list_name, state)",
    )),
    Migration(3, "a re-spun image (same version, new sha512) is another image: key the live records by sha512 too", (
        "DROP INDEX target_images_live",
        "CREATE UNIQUE INDEX target_images_live ON target_images (target, list_name, identifier, version, sha512)"
        " WHERE state <> 'deleted'",
    )),
)
LATEST = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version ``conn`` is at (0 for a new database)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, upto: int = LATEST) -> int:
    """Bring the schema of ``conn`` (in autocommit mode) forward to version ``upto``; returns the version.

    Raises StateError (nothing done, exit 3) if the DB is newer than this code or holds tables but no schema version;
    sqlite3.Error if a migration fails (its transaction is rolled back).
    """
    for migration in MIGRATIONS:
        if migration.version > upto:
            break
        conn.execute("BEGIN IMMEDIATE")  # re-read the version under the write lock: another process may migrate
        try:
            current = _checked_version(conn)
            if current < migration.version:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {migration.version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn)


def _checked_version(conn: sqlite3.Connection) -> int:
    current = schema_version(conn)
    if current > LATEST:
        raise StateError(f"state.db schema {current} is newer than this imagesync ({LATEST})",
                             hint="upgrade imagesync; the state database is left untouched")
    if current == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StateError("state.db holds tables but no imagesync schema version",
                             hint="point state_dir at imagesync's own directory")
    return current
