"""The plan as a table: every rule of plan.diff, one row each, plus several targets with independent plans."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from imagesync.model import Action, DesiredImage, Held, Image, Known, ListDesire, TargetPolicy
from imagesync.run.plan import diff
from imagesync.targets import properties

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T = TargetPolicy(name="cloud")


def img(identifier: str = "a", version: str = "1", sha: str = "1", expires: datetime | None = None,
        title: str = "Title") -> DesiredImage:
    image = Image(identifier=identifier, uri=f"https://h/{identifier}", sha512=sha * 128, size=10, version=version,
                  title=title, description=None, arch=None, os_name=None, os_version=None, format=None, vo="vo",
                  ram_minimum=None, core_minimum=None, mpuri=None, expires=expires,
                  attributes=MappingProxyType({"dc:title": title}))
    return DesiredImage(list_name="L", list_identifier="lid", image=image)


def lst(*images: DesiredImage, status: str = "ok", **kw: object) -> ListDesire:
    return ListDesire(name="L", status=status, images=images, **kw)  # type: ignore[arg-type]


def held(tid: str, identifier: str = "a", version: str = "1", sha: str = "1", *, active: bool = True,
         item: DesiredImage | None = None, list_name: str = "L") -> Held:
    return Held(target_id=tid, list_name=list_name, identifier=identifier, version=version, sha512=sha * 128,
                active=active, digest=properties.digest(item or img(identifier, version, sha)))


def known(tid: str, identifier: str = "a", version: str = "1", sha: str = "1", *, rid: int = 1,
          state: str = "active", retired_at: datetime | None = None) -> Known:
    return Known(record_id=rid, list_name="L", identifier=identifier, version=version, sha512=sha * 128, state=state,
                 target_id=tid, retired_at=retired_at)


def plan(desired: list[ListDesire], inventory: list[Held], state: list[Known], target: TargetPolicy = T,
         ) -> tuple[list[tuple[str, str, str | None]], tuple[str, ...], tuple[Action, ...]]:
    result = diff(desired, {target.name: state}, {target.name: inventory}, now=NOW, targets=[target])
    return [(a.kind, a.reason, a.target_id) for a in result.actions], result.notes, result.actions


@pytest.mark.parametrize(("desired", "inventory", "state", "expected"), [
    pytest.param([lst(img())], [], [], [("add", "new image", None)], id="new image"),
    pytest.param([lst(img())], [held("g1")], [known("g1")], [("keep", "up to date", "g1")], id="up to date"),
    pytest.param([lst(img(version="2", sha="2"))], [held("g1")], [known("g1")],
                 [("update", "new version 2 (was 1)", None)], id="new version"),
    pytest.param([lst(img(sha="2"))], [held("g1")], [known("g1")],
                 [("update", "sha512 of version 1 changed", None)], id="sha512 changed"),
    pytest.param([lst(img(title="New title"))], [held("g1")], [known("g1")],
                 [("update-metadata", "metadata changed", "g1")], id="metadata only"),
    pytest.param([lst()], [held("g1")], [known("g1")], [("retire", "removed from list L", "g1")], id="removed"),
    pytest.param([lst(img(), status="failed")], [held("g1")], [known("g1")],
                 [("keep", "list L unavailable this run: its images are kept", "g1")], id="unknown list keeps all"),
    pytest.param([lst(status="failed", expired=True, expires=NOW - timedelta(days=1))], [held("g1")], [known("g1")],
                 [("retire", "list L expired on 2026-11-24T12:00:00Z", "g1")], id="expired list retires"),
    pytest.param([lst(status="failed", expired=True, on_expiry="keep")], [held("g1")], [known("g1")],
                 [("keep", "list L expired; on_expiry: keep", "g1")], id="expired list on_expiry keep"),
    pytest.param([lst(img(expires=NOW - timedelta(hours=1)))], [held("g1")], [known("g1")],
                 [("retire", "image expired on 2026-11-25T11:00:00Z", "g1")], id="image-level expiry retires"),
    pytest.param([lst(img(expires=NOW - timedelta(hours=1)))], [], [], [], id="expired image never added"),
    pytest.param([lst(img(expires=NOW + timedelta(hours=1)))], [], [], [("add", "new image", None)],
                 id="image expiring later is added"),
    pytest.param([lst(img("a"), img("b"), subset=("b",))], [held("g1", "a")], [known("g1", "a")],
                 [("add", "new image", None), ("retire", "not in the subscribed subset (images:)", "g1")],
                 id="subset subscription"),
    pytest.param([lst(img())], [], [known("g1")], [("add", "missing from target: re-add", None)],
                 id="deleted by hand is re-added"),
    pytest.param([lst(img())], [held("g9")], [],
                 [("update-metadata", "adopted: identifier, version and sha512 match the list", "g9")],
                 id="adopt matching (metadata and shares rewritten)"),
    pytest.param([lst(img())], [held("g1", active=False)], [known("g1", state="retired")],
                 [("update-metadata", "listed again: reactivate", "g1")], id="re-listed reactivates"),
    pytest.param([lst(img())], [held("g1"), held("g2")], [known("g1"), known("g2", rid=2)],
                 [("keep", "up to date", "g1"), ("retire", "duplicate of g1", "g2")], id="duplicate retired"),
])
def test_rules(desired: list[ListDesire], inventory: list[Held], state: list[Known],
               expected: list[tuple[str, str, str | None]]) -> None:
    actions, _, _ = plan(desired, inventory, state)
    assert actions == expected


def test_update_supersedes_old_versions_and_keep_versions() -> None:
    desired = [lst(img(version="3", sha="3"))]
    inventory = [held("g1", version="1"), held("g2", version="2", sha="2")]
    state = [known("g1", version="1", rid=1), known("g2", version="2", sha="2", rid=2)]
    _, _, actions = plan(desired, inventory, state)
    assert [(a.kind, a.supersedes) for a in actions] == [("update", ("g2", "g1"))]
    _, _, kept = plan(desired, inventory, state, TargetPolicy(name="cloud", keep_versions=1))
    assert [(a.kind, a.target_id or a.supersedes) for a in kept] == [("update", ("g1",)), ("keep", "g2")]
    assert kept[1].reason == "older version kept (keep_versions=1)"


def test_old_version_left_active_after_an_update_is_retired_next_run() -> None:
    inventory = [held("g1", version="1"), held("g2", version="2", sha="2")]
    state = [known("g1", version="1", rid=1), known("g2", version="2", sha="2", rid=2)]
    actions, _, _ = plan([lst(img(version="2", sha="2"))], inventory, state)
    assert actions == [("keep", "up to date", "g2"), ("retire", "superseded by version 2", "g1")]


def test_unknown_tagged_image_not_matching_is_reported_not_touched() -> None:
    actions, notes, _ = plan([lst(img(version="2", sha="2"))], [held("g7", version="1")], [])
    assert actions == [("add", "new image", None)]
    assert notes == ("target cloud: tagged image g7 (L/a 1) is unknown to the state and does not match the list: "
                     "left alone",)
    removed, notes, _ = plan([lst()], [held("g7")], [])
    assert removed == [] and "not retired (removed from list L)" in notes[0]


@pytest.mark.parametrize("state", [[known("g1")], []], ids=["known", "forgotten"])
def test_a_misplaced_copy_is_replaced_whether_the_state_knows_it_or_not(state: list[Known]) -> None:
    actions, notes, made = plan([lst(img())], [replace(held("g1"), misplaced=True)], state)
    assert actions == [("update", "version 1 is held outside the project it belongs in: copied there", None)]
    assert made[0].supersedes == ("g1",) and notes == ()


def test_images_of_unconfigured_list_left_alone() -> None:
    actions, notes, _ = plan([lst()], [held("g1", list_name="old")], [])
    assert actions == [] and "of list old, which is not configured, left alone" in notes[0]


@pytest.mark.parametrize(("age", "expected"), [(timedelta(days=8), [("retire", "g1", "delete")]),
                                                (timedelta(days=6), [])])
def test_delete_after(age: timedelta, expected: list[tuple[str, str, str]]) -> None:
    target = TargetPolicy(name="cloud", delete_after=timedelta(days=7))
    _, _, actions = plan([lst()], [held("g1", active=False)], [known("g1", state="retired", retired_at=NOW - age)],
                         target)
    assert [(a.kind, a.target_id, a.retire_mode) for a in actions] == expected


def test_retire_uses_target_mode() -> None:
    _, _, actions = plan([lst()], [held("g1")], [known("g1")], TargetPolicy(name="cloud", retire_mode="hide"))
    assert actions[0].retire_mode == "hide"


def test_several_targets_plan_independently() -> None:
    a, b = TargetPolicy(name="a"), TargetPolicy(name="b")
    result = diff([lst(img())], {"a": [known("g1")], "b": []}, {"a": [held("g1")], "b": []}, now=NOW, targets=[a, b])
    assert [(x.target, x.kind) for x in result.actions] == [("a", "keep"), ("b", "add")]
    assert result.for_target("b")[0].desired is not None


def test_adopted_with_changed_metadata_updates_it() -> None:
    stale = held("g9", item=img(title="Old"))
    _, _, actions = plan([lst(img())], [stale], [])
    assert (actions[0].kind, actions[0].adopt) == ("update-metadata", True)


def test_back_to_an_older_version_retires_the_newer_only_after_reactivation() -> None:
    inventory = [held("g1", version="1", active=False), held("g2", version="2", sha="2")]
    state = [known("g1", version="1", rid=1, state="retired"), known("g2", version="2", sha="2", rid=2)]
    _, _, actions = plan([lst(img(version="1"))], inventory, state)
    assert [(a.kind, a.target_id, a.supersedes, a.reason) for a in actions] == [
        ("update-metadata", "g1", ("g2",), "listed again: reactivate")]
