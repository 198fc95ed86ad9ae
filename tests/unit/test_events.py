"""The event documents (imagesync.notify.events): which action and list outcome makes which event, what each carries,
how hooks see it as ``IMAGESYNC_EVENT_*``, and that no registered secret survives in any of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from imagesync.config.settings import ListSettings
from imagesync.model import Action, ActionKind, DesiredImage, Image, ListDesire
from imagesync.notify import events
from imagesync.run.execute import ActionResult
from imagesync.run.pipeline import SyncResult, TargetStatus
from imagesync.sources.base import SourceOutcome
from imagesync.util import redact

NOW = datetime(2026, 11, 22, 12, 3, 10, tzinfo=UTC)
SECRET = "tok-9f8e7d6c5b4a"


def desired(identifier: str = "img-1", version: str = "2.0") -> DesiredImage:
    image = Image(identifier=identifier, uri=f"https://h/{identifier}", sha512="a" * 128, size=10, version=version,
                  title="Demo", description=None, arch=None, os_name=None, os_version=None, format=None,
                  vo="demo.vo", ram_minimum=None, core_minimum=None, mpuri=None, expires=None,
                  attributes=MappingProxyType({}))
    return DesiredImage(list_name="demo", list_identifier="lid", image=image)


def action(kind: ActionKind, **kw: object) -> Action:
    return Action(target="cloud", list_name="demo", identifier="img-1", version="2.0", kind=kind, reason="why",
                  title="Demo", desired=desired(), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "event"), [("add", "image-added"), ("update", "image-updated"),
                                             ("retire", "image-retired")])
def test_adds_updates_and_retires_make_their_event(kind: ActionKind, event: str) -> None:
    made = events.for_action(ActionResult(action(kind), "done", None, "tid-1", 10), now=NOW)
    assert made is not None
    doc = made.document
    assert made.kind == doc["kind"] == event
    assert {k: doc[k] for k in ("list", "image", "version", "target", "target_id", "result", "error", "action",
                                "time", "vo", "title", "bytes", "schema")} == {
        "list": "demo", "image": "img-1", "version": "2.0", "target": "cloud", "target_id": "tid-1",
        "result": "done", "error": None, "action": kind, "time": "2026-11-22T12:03:10Z", "vo": "demo.vo",
        "title": "Demo", "bytes": 10, "schema": 1}
    assert doc["host"] and len(doc["id"]) == 36


def test_an_update_names_the_versions_it_retires() -> None:
    made = events.for_action(ActionResult(action("update", supersedes=("old-1", "old-2")), "done", None, "new"),
                             now=NOW)
    assert made is not None and made.document["supersedes"] == ["old-1", "old-2"]


def test_a_failed_action_still_makes_its_event_with_the_error() -> None:
    made = events.for_action(ActionResult(action("add"), "failed", "cloud: upload refused"), now=NOW)
    assert made is not None
    assert (made.document["result"], made.document["error"]) == ("failed", "cloud: upload refused")


@pytest.mark.parametrize(("kind", "status"), [("keep", "done"), ("update-metadata", "done"), ("add", "planned")])
def test_keeps_metadata_refreshes_and_planned_actions_make_none(kind: ActionKind, status: str) -> None:
    assert events.for_action(ActionResult(action(kind), status), now=NOW) is None  # type: ignore[arg-type]


def outcome(status: str, error: str | None = None, *, expired: bool = False) -> SourceOutcome:
    settings = ListSettings(name="demo", url=f"https://{SECRET}:x-oauth-basic@lists.example/image.list")
    desire = ListDesire(name="demo", status=status, expired=expired)  # type: ignore[arg-type]
    return SourceOutcome(settings=settings, status=status, error=error, accepted=None,  # type: ignore[arg-type]
                       desire=desire)


def test_only_failed_lists_make_list_failed() -> None:
    assert events.for_list(outcome("ok"), now=NOW) is None
    assert events.for_list(outcome("unchanged"), now=NOW) is None
    made = events.for_list(outcome("failed", "demo: list expired", expired=True), now=NOW)
    assert made is not None
    assert {k: made.document[k] for k in ("kind", "list", "url", "error", "expired")} == {
        "kind": "list-failed", "list": "demo", "url": "https://***@lists.example/image.list",
        "error": "demo: list expired", "expired": True}


def test_run_finished_carries_summary_exit_code_lists_and_targets() -> None:
    result = SyncResult(dry_run=False, started_at=NOW - timedelta(minutes=3), finished_at=NOW,
                        lists=[outcome("failed", "demo: HTTP 401")], targets=[TargetStatus("cloud", "ok")],
                        results=[ActionResult(action("add"), "done", None, "t", 10)], bytes_downloaded=10)
    doc = events.run_finished(result, exit_code=1, now=NOW).document
    assert (doc["kind"], doc["exit_code"], doc["result"], doc["error"]) == ("run-finished", 1, "partial", None)
    assert (doc["started_at"], doc["finished_at"]) == ("2026-11-22T12:00:10Z", "2026-11-22T12:03:10Z")
    assert doc["summary"]["add"] == 1 and doc["summary"]["bytes_downloaded"] == 10
    assert doc["lists"] == [{"name": "demo", "status": "failed", "error": "demo: HTTP 401"}]
    assert doc["targets"] == [{"name": "cloud", "status": "ok", "error": None}]


def test_a_run_that_stopped_early_says_why() -> None:
    doc = events.run_stopped("state.db: cannot open", exit_code=3, started_at=NOW, now=NOW).document
    assert (doc["result"], doc["exit_code"], doc["error"], doc["summary"]) == ("error", 3, "state.db: cannot open",
                                                                               None)


def test_environment_has_each_scalar_field_and_leaves_structures_to_the_json() -> None:
    made = events.for_action(ActionResult(action("update", supersedes=("o",)), "done", None, "t\nid"), now=NOW)
    assert made is not None
    env = made.environment()
    assert env["IMAGESYNC_EVENT_KIND"] == "image-updated"
    assert env["IMAGESYNC_EVENT_TARGET_ID"] == "t\\nid"  # one line, whatever a list or a target wrote
    assert env["IMAGESYNC_EVENT_ERROR"] == ""
    assert env["IMAGESYNC_EVENT_SCHEMA"] == "1"
    assert "IMAGESYNC_EVENT_SUPERSEDES" not in env
    result = SyncResult(dry_run=False, started_at=NOW, finished_at=NOW, lists=[outcome("failed", "x")],
                        bytes_downloaded=7)
    finished = events.run_finished(result, exit_code=3, now=NOW).environment()
    assert (finished["IMAGESYNC_EVENT_EXIT_CODE"], finished["IMAGESYNC_EVENT_RESULT"]) == ("3", "nothing-done")
    assert finished["IMAGESYNC_EVENT_SUMMARY_BYTES_DOWNLOADED"] == "7"
    assert finished["IMAGESYNC_EVENT_SUMMARY_UPDATE_METADATA"] == "0"
    assert "IMAGESYNC_EVENT_LISTS" not in finished and "IMAGESYNC_EVENT_SUMMARY" not in finished
    stopped = events.run_stopped("x", exit_code=2, started_at=NOW, now=NOW).environment()
    assert (stopped["IMAGESYNC_EVENT_SUMMARY"], stopped["IMAGESYNC_EVENT_ERROR"]) == ("", "x")


def test_no_registered_secret_survives_in_the_body_or_the_environment() -> None:
    redact.register(SECRET)
    made = events.for_action(ActionResult(action("add"), "failed", f"upload with {SECRET} refused"), now=NOW)
    listed = events.for_list(outcome("failed", f"HTTP 401 for token {SECRET}"), now=NOW)
    assert made is not None and listed is not None
    for event in (made, listed):
        assert SECRET not in event.body().decode()
        assert all(SECRET not in value for value in event.environment().values())
    assert json.loads(made.body())["error"] == "upload with *** refused"


def test_the_body_is_one_line_of_json() -> None:
    made = events.for_action(ActionResult(action("add"), "failed", "line one\nline two\u2028three"), now=NOW)
    assert made is not None
    body = made.body()
    assert b"\n" not in body and "\u2028".encode() not in body
    assert json.loads(body)["error"] == "line one\nline two\u2028three"
