"""Placement of planned actions: the format a target receives, and which actions are planned failures."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from imagesync.model import Action, ActionKind, DesiredImage, Image, Placement, Plan
from imagesync.run import placement


@pytest.mark.parametrize(("declared", "accepted", "expected"), [
    (None, ("qcow2", "raw"), (None, None)),
    ("", ("qcow2", "raw"), (None, None)),
    ("QCOW2", ("qcow2", "raw"), ("qcow2", None)),
    ("raw", ("qcow2", "raw"), ("raw", None)),
    ("VMDK", ("qcow2", "raw"), ("qcow2", "vmdk")),
    ("ova", ("raw",), ("raw", "ova")),
    ("vmdk", ("iso", "raw"), ("raw", "vmdk")),  # conversion never produces an ISO
    ("no-such-format", ("qcow2",), (None, None)),  # unknown words: only the bytes will tell
    ("qcow2", (), ("qcow2", None)),  # a target that takes anything (noop)
])
def test_target_format(declared: str | None, accepted: tuple[str, ...],
                       expected: tuple[str | None, str | None]) -> None:
    assert placement.target_format(declared, accepted, "L/a") == expected


def action(kind: ActionKind, problem: str | None) -> Action:
    image = Image(identifier="a", uri="https://h/a", sha512="1" * 128, size=10, version="1", title="A",
                  description=None, arch=None, os_name=None, os_version=None, format=None, vo="vo", ram_minimum=None,
                  core_minimum=None, mpuri=None, expires=None, attributes=MappingProxyType({}))
    desired = DesiredImage(list_name="L", list_identifier="lid", image=image)
    return Action(target="cloud", list_name="L", identifier="a", version="1", kind=kind, reason="why",
                  desired=desired, target_id="g1" if kind != "add" else None,
                  placement=Placement(name="A 1", vo="vo", problem=problem))


@pytest.mark.parametrize(("kind", "blocked"), [
    ("add", True), ("update", True), ("update-metadata", True), ("keep", False), ("retire", False)])
def test_only_actions_that_need_the_project_are_blocked_by_its_problem(kind: ActionKind, blocked: bool) -> None:
    assert action(kind, "VO vo has no project").blocked == ("VO vo has no project" if blocked else None)
    assert action(kind, None).blocked is None
    assert replace(action(kind, "x"), placement=None).blocked is None


def test_a_blocked_action_is_a_planned_failure_never_a_planned_add() -> None:
    plan = Plan(actions=(action("add", "VO vo has no project"), action("add", None), action("keep", "ignored")))
    results = placement.dry_results(plan)
    assert [(r.action.kind, r.status, r.error) for r in results] == [
        ("add", "failed", "VO vo has no project"), ("add", "planned", None), ("keep", "done", None)]
    runnable, failed = placement.split_blocked(plan)
    assert runnable.actions == plan.actions[1:]
    assert [(r.status, r.error) for r in failed] == [("failed", "VO vo has no project")]
