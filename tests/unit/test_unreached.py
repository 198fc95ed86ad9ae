"""The adds and updates an unreachable target misses, from the state's memory (imagesync.run.unreached)."""

from __future__ import annotations

from datetime import UTC, datetime

from imagesync.model import Known, TargetPolicy
from imagesync.run.unreached import missed, remembered
from tests.unit.test_plan import img, lst

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def known(tid: str | None, identifier: str, version: str = "1", state: str = "active", rid: int = 1) -> Known:
    return Known(record_id=rid, list_name="L", identifier=identifier, version=version, sha512="1" * 128, state=state,
                 target_id=tid)


def test_only_what_the_state_last_saw_live_stands_in_for_the_inventory() -> None:
    records = [known("g1", "a"), known("g2", "b", state="retired"), known(None, "c", state="failed"),
               known("g4", "d", state="deleted"), known("g5", "e", state="superseded")]
    assert [h.target_id for h in remembered(records)] == ["g1", "g5"]


def test_adds_and_updates_fail_with_the_targets_error_and_nothing_is_retired_or_rewritten() -> None:
    desired = [lst(img("a", version="2", sha="2"), img("b"), img("new"))]
    state = {"dead": [known("g1", "a", rid=1), known("g2", "b", rid=2), known("g3", "gone", rid=3)]}
    results = missed(desired, state, {"dead": "target dead: cannot reach Keystone"}, now=NOW,
                     targets=[TargetPolicy(name="dead"), TargetPolicy(name="alive")])
    # b is held (a keep, or a metadata rewrite it cannot check), "gone" would retire: neither is reported.
    assert sorted((r.action.target, r.action.kind, r.action.identifier, r.status) for r in results) == [
        ("dead", "add", "new", "failed"), ("dead", "update", "a", "failed")]
    assert {r.error for r in results} == {"target dead: cannot reach Keystone"}


def test_a_reachable_target_gets_nothing_here() -> None:
    assert missed([lst(img("a"))], {}, {}, now=NOW, targets=[TargetPolicy(name="alive")]) == []
