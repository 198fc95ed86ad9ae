"""The state store on a real SQLite file: round trips, WAL, migrations, atomic steps, crashes, no secrets."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagesync.errors import EXIT_NOTHING_DONE, ConfigError, ImagesyncError, RollbackError, StateCorruptError
from imagesync.model import Image
from imagesync.state.lifecycle import IllegalTransition, TargetState
from imagesync.state.schema import LATEST, MIGRATIONS, migrate
from imagesync.state.store import StateStore
from imagesync.util import redact

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
URL = "https://lists.example.org/store/fedcloud/image.list"
S = TargetState


def image(identifier: str = "img-1", version: str = "1.0", *, uri: str = "https://images.example.org/a.qcow2",
          attributes: dict[str, object] | None = None) -> Image:
    return Image(identifier=identifier, uri=uri, sha512="ab" * 64, size=1234, version=version, title="Ubuntu 24.04",
                 description=None, arch="x86_64", os_name="Ubuntu", os_version="24.04", format="qcow2",
                 vo="fedcloud.egi.eu", ram_minimum=512, core_minimum=1, mpuri=None, expires=None,
                 attributes=attributes or {"dc:identifier": identifier, "hv:version": version, "hv:uri": uri})


def record_ok(store: StateStore, *, created: datetime = T0, url: str = URL, raw: bytes = b"signed-1",
              etag: str | None = '"e1"', unchanged: bool = False, at: datetime = T0) -> None:
    store.record_list_ok("fedcloud", url=url, etag=etag, last_modified="Sun, 22 Nov 2026 12:00:00 GMT", raw=raw,
                         identifier="list-id", created=created, expires=created + timedelta(days=30),
                         signer_dn="/DC=org/CN=signer", signer_ca="/DC=org/CN=CA", unchanged=unchanged, at=at)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


def reader(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=0.1)


# -- opening, WAL, migrations ---------------------------------------------------------------------------


def test_open_creates_dirs_in_wal_mode_at_latest_schema(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "a" / "b") as store:
        assert store.path == tmp_path / "a" / "b" / "state.db"
        conn = reader(store.path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST == MIGRATIONS[-1].version
        conn.close()


def test_reopen_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        record_ok(store)
    with StateStore.open(tmp_path) as store:
        assert store.get_list("fedcloud") is not None
        raw = sqlite3.connect(store.path, isolation_level=None)
        assert migrate(raw) == LATEST
        raw.close()
    conn = reader(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert conn.execute("SELECT count(*) FROM lists").fetchone()[0] == 1
    conn.close()


def test_future_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        record_ok(store)
    conn = reader(tmp_path / "state.db")
    conn.execute(f"PRAGMA user_version = {LATEST + 5}")
    conn.close()
    with pytest.raises(ImagesyncError) as caught:
        StateStore.open(tmp_path)
    assert f"state.db schema {LATEST + 5} is newer than this imagesync ({LATEST})" in str(caught.value)
    assert caught.value.exit_code == EXIT_NOTHING_DONE
    conn = reader(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 5
    assert conn.execute("SELECT count(*) FROM lists").fetchone()[0] == 1
    conn.close()


def test_version_1_database_with_data_is_migrated_forward(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    assert migrate(conn, upto=1) == 1
    # Rows as the version-1 code wrote them, by hand: the migration must carry them over.
    conn.execute("INSERT INTO target_images (target, list_name, identifier, version, sha512, state, projects,"
                 " created_at, updated_at) VALUES ('cloud', 'fedcloud', 'img-1', '1.0', 'ab', 'active', '[\"p1\"]',"
                 " '2026-11-22T12:00:00.000000Z', '2026-11-22T12:00:00.000000Z')")
    conn.close()
    with StateStore.open(tmp_path) as store:
        [record] = store.target_images()
        assert (record.state, record.projects, record.created_at) == (S.ACTIVE, ("p1",), T0)
        with pytest.raises(sqlite3.IntegrityError):  # migration 2's one-live-record rule now holds
            store._conn.execute("INSERT INTO target_images (target, list_name, identifier, version, sha512, state,"
                                " created_at, updated_at) VALUES ('cloud', 'fedcloud', 'img-1', '1.0', 'ab',"
                                " 'pending', 'x', 'x')")
    assert reader(tmp_path / "state.db").execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_foreign_database_without_version_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE something_else (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ImagesyncError, match="holds tables but no imagesync schema version"):
        StateStore.open(tmp_path)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateCorruptError, match="not an SQLite database") as caught:
        StateStore.open(tmp_path)
    assert str(tmp_path / "state.db") in str(caught.value)


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_busy_timeout_in_the_environment_is_a_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("IMAGESYNC_STATE_BUSY_TIMEOUT", value)
    with pytest.raises(ConfigError, match=f"IMAGESYNC_STATE_BUSY_TIMEOUT='{value}': not a number of seconds"):
        StateStore.open(tmp_path)
    assert not (tmp_path / "state.db").exists()


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.start_run(dry_run=False, at=datetime(2026, 1, 1))


# -- lists -----------------------------------------------------------------------------------------------


def test_list_round_trip(store: StateStore) -> None:
    assert store.get_list("fedcloud") is None
    record_ok(store)
    record = store.get_list("fedcloud")
    assert record is not None
    assert (record.name, record.url, record.etag, record.raw, record.identifier) == (
        "fedcloud", URL, '"e1"', b"signed-1", "list-id")
    assert (record.created, record.expires, record.fetched_at, record.accepted_at) == (
        T0, T0 + timedelta(days=30), T0, T0)
    assert record.created is not None and record.created.tzinfo is not None
    assert (record.signer_dn, record.signer_ca, record.status, record.error) == (
        "/DC=org/CN=signer", "/DC=org/CN=CA", "ok", None)
    assert record.last_modified == "Sun, 22 Nov 2026 12:00:00 GMT"
    assert store.lists() == [record]
    assert record.cache_for(URL) == ('"e1"', "Sun, 22 Nov 2026 12:00:00 GMT", b"signed-1")
    assert record.cache_for("https://elsewhere.example.org/x.list") is None


def test_unchanged_status_after_304(store: StateStore) -> None:
    record_ok(store)
    record_ok(store, unchanged=True, at=T0 + timedelta(hours=1))
    record = store.get_list("fedcloud")
    assert record is not None
    assert (record.status, record.accepted_at, record.created) == ("unchanged", T0 + timedelta(hours=1), T0)


def test_created_never_moves_backwards(store: StateStore) -> None:
    later = T0 + timedelta(days=1)
    record_ok(store, created=later, raw=b"signed-2")
    with pytest.raises(RollbackError) as caught:
        record_ok(store, created=T0, raw=b"signed-old")
    assert "fedcloud" in str(caught.value)
    record = store.get_list("fedcloud")
    assert record is not None and (record.created, record.raw) == (later, b"signed-2")
    assert store.previous_created("fedcloud", url=URL) == later
    record_ok(store, created=later + timedelta(seconds=1), raw=b"signed-3")
    assert store.previous_created("fedcloud", url=URL) == later + timedelta(seconds=1)


def test_rollback_is_per_url(store: StateStore) -> None:
    record_ok(store, created=T0 + timedelta(days=1))
    moved = "https://new-home.example.org/image.list"
    assert store.previous_created("fedcloud", url=moved) is None
    record_ok(store, url=moved, created=T0)  # a new source starts its own history
    assert store.previous_created("fedcloud", url=moved) == T0


def test_failed_fetch_keeps_accepted_copy(store: StateStore) -> None:
    record_ok(store)
    store.record_list_failed("fedcloud", url=URL, error="HTTP 503 from server", at=T0 + timedelta(hours=2))
    record = store.get_list("fedcloud")
    assert record is not None
    assert (record.status, record.error, record.fetched_at) == ("failed", "HTTP 503 from server",
                                                                 T0 + timedelta(hours=2))
    assert (record.raw, record.created, record.identifier, record.etag, record.accepted_at) == (
        b"signed-1", T0, "list-id", '"e1"', T0)
    assert store.previous_created("fedcloud", url=URL) == T0
    record_ok(store, at=T0 + timedelta(hours=3))
    again = store.get_list("fedcloud")
    assert again is not None and (again.status, again.error) == ("ok", None)


def test_failed_first_fetch_creates_a_record(store: StateStore) -> None:
    store.record_list_failed("other", url=URL, error="boom", at=T0)
    record = store.get_list("other")
    assert record is not None
    assert (record.status, record.raw, record.created, record.accepted_at) == ("failed", None, None, None)


def test_validators_alone_drop_a_copy_they_no_longer_describe(store: StateStore) -> None:
    store.record_validators("dry", url=URL, etag='"v1"', last_modified=None, at=T0)
    record = store.get_list("dry")
    assert record is not None and (record.etag, record.raw, record.status) == ('"v1"', None, None)
    record_ok(store)
    store.record_validators("fedcloud", url=URL, etag='"e1"', last_modified="Sun, 22 Nov 2026 12:00:00 GMT",
                            at=T0)
    same = store.get_list("fedcloud")
    assert same is not None and same.raw == b"signed-1"
    store.record_validators("fedcloud", url=URL, etag='"e2"', last_modified=None, at=T0)
    changed = store.get_list("fedcloud")
    assert changed is not None
    assert (changed.etag, changed.raw, changed.created) == ('"e2"', None, T0)
    assert changed.cache_for(URL) is None


# -- images ----------------------------------------------------------------------------------------------


def test_image_round_trip_and_upsert(store: StateStore) -> None:
    store.upsert_image("fedcloud", image(), at=T0)
    store.upsert_image("fedcloud", image(version="2.0"), at=T0)
    store.upsert_image("other", image("img-9"), at=T0)
    store.upsert_image("fedcloud", image(), at=T0 + timedelta(days=1))
    assert [(r.list_name, r.identifier, r.version) for r in store.images()] == [
        ("fedcloud", "img-1", "1.0"), ("fedcloud", "img-1", "2.0"), ("other", "img-9", "1.0")]
    first = store.images("fedcloud")[0]
    assert (first.sha512, first.size, first.uri, first.title) == (
        "ab" * 64, 1234, "https://images.example.org/a.qcow2", "Ubuntu 24.04")
    assert (first.first_seen, first.last_seen) == (T0, T0 + timedelta(days=1))
    assert json.loads(first.attributes_json)["hv:version"] == "1.0"
    assert store.images("nope") == []


# -- target images ---------------------------------------------------------------------------------------


def new(store: StateStore, version: str = "1.0", target: str = "cloud") -> int:
    return store.new_target_image(target=target, list_name="fedcloud", identifier="img-1", version=version,
                                  sha512="ab" * 64, at=T0).id


def test_target_image_lifecycle_round_trip(store: StateStore) -> None:
    rid = new(store)
    record = store.get_target_image(rid)
    assert record is not None
    assert (record.state, record.target_id, record.projects, record.error, record.retired_at) == (
        S.PENDING, None, (), None, None)
    assert (record.target, record.list_name, record.identifier, record.version, record.created_at) == (
        "cloud", "fedcloud", "img-1", "1.0", T0)
    store.transition(rid, S.DOWNLOADED, at=T0)
    store.transition(rid, S.UPLOADING, at=T0)
    active = store.transition(rid, S.ACTIVE, at=T0 + timedelta(minutes=5), target_id="g-123",
                              projects=["p1", "p2"])
    assert (active.state, active.target_id, active.projects, active.updated_at) == (
        S.ACTIVE, "g-123", ("p1", "p2"), T0 + timedelta(minutes=5))
    refreshed = store.transition(rid, S.ACTIVE, at=T0, error="metadata update refused")
    assert (refreshed.state, refreshed.target_id, refreshed.error) == (S.ACTIVE, "g-123", "metadata update refused")
    retired = store.transition(rid, S.RETIRED, at=T0 + timedelta(days=1))
    assert (retired.retired_at, retired.error, retired.projects) == (T0 + timedelta(days=1), None, ("p1", "p2"))
    assert store.transition(rid, S.ACTIVE, at=T0).retired_at is None
    assert store.get_target_image(rid) == store.target_images()[0]
    assert store.get_target_image(rid + 100) is None


def test_new_target_image_is_idempotent_per_live_record(store: StateStore) -> None:
    rid = new(store)
    assert new(store) == rid
    assert new(store, target="other") != rid
    store.transition(rid, S.FAILED, at=T0)
    assert new(store) == rid  # failed is retried, not duplicated
    store.transition(rid, S.DELETED, at=T0)
    assert store.find_target_image(target="cloud", list_name="fedcloud", identifier="img-1", version="1.0") is None
    again = new(store)
    assert again != rid
    found = store.find_target_image(target="cloud", list_name="fedcloud", identifier="img-1", version="1.0")
    assert found is not None and found.id == again


def test_failed_records_error_and_leaving_it_clears_it(store: StateStore) -> None:
    rid = new(store)
    failed = store.transition(rid, S.FAILED, at=T0, error="checksum mismatch")
    assert (failed.state, failed.error) == (S.FAILED, "checksum mismatch")
    retried = store.transition(rid, S.PENDING, at=T0)
    assert (retried.state, retried.error) == (S.PENDING, None)


def test_record_error_keeps_state(store: StateStore) -> None:
    rid = new(store)
    noted = store.record_error(rid, error="retire failed: 409", at=T0 + timedelta(hours=1))
    assert (noted.state, noted.error, noted.updated_at) == (S.PENDING, "retire failed: 409", T0 + timedelta(hours=1))
    with pytest.raises(KeyError):
        store.record_error(rid + 1, error="x", at=T0)


def test_illegal_transition_raises_and_changes_nothing(store: StateStore) -> None:
    rid = new(store)
    before = store.get_target_image(rid)
    with pytest.raises(IllegalTransition, match="pending -> active"):
        store.transition(rid, S.ACTIVE, at=T0 + timedelta(days=1), target_id="g-1")
    assert store.get_target_image(rid) == before
    with pytest.raises(KeyError):
        store.transition(rid + 1, S.DOWNLOADED, at=T0)


def test_target_image_filters(store: StateStore) -> None:
    a = new(store, "1.0")
    b = new(store, "2.0")
    c = new(store, "1.0", target="other")
    store.transition(b, S.FAILED, at=T0)
    assert [r.id for r in store.target_images()] == [a, b, c]
    assert [r.id for r in store.target_images(target="cloud")] == [a, b]
    assert [r.id for r in store.target_images(states=[S.FAILED])] == [b]
    assert [r.id for r in store.target_images(target="other", states=[S.PENDING, S.FAILED])] == [c]
    assert store.target_images(list_name="nope") == []
    assert store.target_images(states=[]) == []
    store.transition(a, S.DOWNLOADED, at=T0)
    store.transition(a, S.UPLOADING, at=T0)
    store.transition(a, S.ACTIVE, at=T0, target_id="g-1")
    assert [r.id for r in store.target_images(target="cloud", target_id="g-1")] == [a]
    assert store.target_images(target="other", target_id="g-1") == []
    assert store.target_images(target_id="g-2") == []
    known = store.target_images()[1].known()
    assert (known.record_id, known.state, known.version) == (b, "failed", "2.0")


# -- runs ------------------------------------------------------------------------------------------------


def test_runs_round_trip(store: StateStore) -> None:
    first = store.start_run(dry_run=True, at=T0)
    second = store.start_run(dry_run=False, at=T0 + timedelta(hours=1))
    store.finish_run(second, exit_code=1, counts={"add": 2, "failed": 1}, at=T0 + timedelta(hours=2))
    newest, oldest = store.last_runs(5)
    assert (newest.id, newest.dry_run, newest.exit_code, dict(newest.counts), newest.finished_at) == (
        second, False, 1, {"add": 2, "failed": 1}, T0 + timedelta(hours=2))
    assert (oldest.id, oldest.dry_run, oldest.finished_at, oldest.exit_code, dict(oldest.counts)) == (
        first, True, None, None, {})
    assert [r.id for r in store.last_runs(1)] == [second]
    with pytest.raises(KeyError):
        store.finish_run(second + 10, exit_code=0, counts={}, at=T0)


# -- atomic steps, concurrency, crashes ------------------------------------------------------------------


def test_exception_inside_step_leaves_no_partial_write(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        with pytest.raises(RuntimeError), store.step():
            record_ok(store)
            rid = new(store)
            store.transition(rid, S.DOWNLOADED, at=T0)
            raise RuntimeError("crash half-way through the step")
        assert store.get_list("fedcloud") is None
        assert store.target_images() == []
        with store.step():  # the store is usable afterwards
            new(store)
    with StateStore.open(tmp_path) as again:
        assert [r.state for r in again.target_images()] == [S.PENDING]


def test_reader_is_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as writer, StateStore.open(tmp_path) as other:
        record_ok(writer)
        with writer.step():
            record_ok(writer, created=T0 + timedelta(days=1), raw=b"signed-2")
            started = time.monotonic()
            seen = other.get_list("fedcloud")  # WAL: reads the last committed state, without waiting
            assert time.monotonic() - started < 1
            assert seen is not None and seen.raw == b"signed-1"
        after = other.get_list("fedcloud")
        assert after is not None and after.raw == b"signed-2"


CRASHER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from imagesync.state.lifecycle import TargetState
from imagesync.state.store import StateStore
store = StateStore.open(Path(sys.argv[1]))
at = datetime.now(UTC)
for i in range(100000):
    with store.step():
        rid = store.new_target_image(target="cloud", list_name="l", identifier=f"img-{i}", version="1",
                                     sha512="ab", at=at)
        store.transition(rid.id, TargetState.DOWNLOADED, at=at)
        store.record_list_failed(f"list-{i}", url="https://x.example.org/l", error="x" * 2000, at=at)
    print(i, flush=True)
"""


def test_sigkill_mid_series_keeps_every_completed_step(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    done = -1
    for line in proc.stdout:
        done = int(line)
        if done >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and done >= 200
    with StateStore.open(tmp_path) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        records = store.target_images()
        names = {r.name for r in store.lists()}
    steps = len(records)
    assert steps > done  # every step reported done is there (and maybe the one after it)
    assert [r.identifier for r in records] == [f"img-{i}" for i in range(steps)]
    assert {r.state for r in records} == {S.DOWNLOADED}  # never a half step: pending without its transition
    assert names == {f"list-{i}" for i in range(steps)}


# -- secrets ---------------------------------------------------------------------------------------------


def test_no_token_reaches_the_database_file(tmp_path: Path) -> None:
    token = "ghp_S3cretT0kenValue"
    redact.register(token)
    with_token = f"https://{token}:x-oauth-basic@lists.example.org/store/image.list"
    in_query = f"https://lists.example.org/store/image.list?access_token={token}"
    with StateStore.open(tmp_path) as store:
        record_ok(store, url=with_token)
        store.record_list_failed("second", url=in_query, error=f"GET {with_token} failed: 401", at=T0)
        store.record_validators("third", url=with_token, etag=None, last_modified=None, at=T0)
        store.upsert_image("fedcloud", image(uri=with_token, attributes={"hv:uri": with_token}), at=T0)
        rid = new(store)
        store.transition(rid, S.FAILED, at=T0, error=f"upload via {in_query} refused")
        record = store.get_list("fedcloud")
        assert record is not None and token not in record.url and "lists.example.org" in record.url
        assert record.cache_for(with_token) is not None  # the token-free URL still matches its own source
        files = list(tmp_path.iterdir())
        assert any(f.name == "state.db-wal" for f in files)
        for f in files:
            assert token.encode() not in f.read_bytes(), f.name
    for f in tmp_path.iterdir():
        assert token.encode() not in f.read_bytes(), f.name
    assert b"lists.example.org" in (tmp_path / "state.db").read_bytes()  # the check above can see URLs at all


def test_upload_threads_share_one_store_and_never_see_a_half_done_step(store: StateStore) -> None:
    """The pipelined executor records steps from its upload threads (issue 9). Before: sqlite3.ProgrammingError
    ("objects created in a thread can only be used in that same thread")."""
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(40):
                record = store.new_target_image(target="t", list_name="L", identifier=f"img-{worker}-{n}",
                                                version="1", sha512="a" * 128, at=T0)
                with store.step():  # two writes no other thread may see apart
                    store.transition(record.id, TargetState.DOWNLOADED, at=T0)
                    store.transition(record.id, TargetState.UPLOADING, at=T0, target_id=f"id-{worker}-{n}")
                seen = {r.state for r in store.target_images(target="t")}
                assert TargetState.DOWNLOADED not in seen, "a reader saw the inside of another thread's step"
        except BaseException as error:  # handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = store.target_images(target="t")
    assert len(records) == 160 and {r.state for r in records} == {TargetState.UPLOADING}
