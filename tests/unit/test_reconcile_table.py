"""The reconciliation table: what a record becomes when its target contradicts it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagesync.model import Held
from imagesync.run.reconcile import corrections
from imagesync.state.lifecycle import TargetState
from imagesync.state.store import TargetImageRecord

NOW = datetime(2026, 11, 29, tzinfo=UTC)
S = TargetState


def _record(state: TargetState, target_id: str | None = "img-1") -> TargetImageRecord:
    return TargetImageRecord(id=1, target="t", list_name="l", identifier="i", version="1", sha512="0" * 128,
                             state=state, target_id=target_id, projects=(), error=None, created_at=NOW,
                             updated_at=NOW, retired_at=None)


def _held(active: bool) -> list[Held]:
    return [Held(target_id="img-1", list_name="l", identifier="i", version="1", sha512="0" * 128, active=active)]


@pytest.mark.parametrize(("state", "held", "expected"), [
    (S.ACTIVE, _held(active=True), None),
    (S.ACTIVE, _held(active=False), S.RETIRED),
    (S.ACTIVE, [], S.DELETED),
    (S.SUPERSEDED, _held(active=False), S.RETIRED),
    (S.SUPERSEDED, _held(active=True), S.ACTIVE),
    (S.RETIRED, _held(active=True), S.ACTIVE),
    (S.RETIRED, _held(active=False), None),
    (S.RETIRED, [], S.DELETED),
    (S.DELETED, _held(active=True), None),
    (S.FAILED, _held(active=True), None),
    (S.FAILED, [], S.DELETED),
])
def test_table(state: TargetState, held: list[Held], expected: TargetState | None) -> None:
    found = corrections([_record(state)], held)
    assert [c.new for c in found] == ([] if expected is None else [expected])


@pytest.mark.parametrize("state", [S.PENDING, S.DOWNLOADED, S.UPLOADING, S.FAILED])
def test_records_without_a_target_id_are_left_to_the_plan(state: TargetState) -> None:
    assert corrections([_record(state, target_id=None)], []) == []
