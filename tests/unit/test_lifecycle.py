"""Every (current, new) pair of the target image lifecycle, allowed or refused, against a table written here."""

from __future__ import annotations

import itertools

import pytest

from imagesync.errors import ImagesyncError
from imagesync.state import lifecycle
from imagesync.state.lifecycle import IllegalTransition, TargetState

# Written out independently of lifecycle.TRANSITIONS, so a change there must be made here too, on purpose.
ALLOWED: set[tuple[str, str]] = {
    ("pending", "downloaded"), ("pending", "failed"), ("pending", "deleted"),
    ("downloaded", "uploading"), ("downloaded", "failed"), ("downloaded", "deleted"),
    ("uploading", "active"), ("uploading", "failed"),
    ("active", "active"), ("active", "superseded"), ("active", "retired"), ("active", "deleted"),
    ("superseded", "retired"), ("superseded", "active"), ("superseded", "deleted"),
    ("retired", "deleted"), ("retired", "active"),
    ("failed", "pending"), ("failed", "downloaded"), ("failed", "uploading"), ("failed", "active"),
    ("failed", "deleted"),
    ("deleted", "pending"),
}
STATES = ["pending", "downloaded", "uploading", "active", "superseded", "retired", "deleted", "failed"]
PAIRS = list(itertools.product(STATES, STATES))


def test_the_states_are_exactly_the_designed_ones() -> None:
    assert [s.value for s in TargetState] == STATES


@pytest.mark.parametrize(("current", "new"), sorted(p for p in PAIRS if p in ALLOWED))
def test_allowed_transition(current: str, new: str) -> None:
    lifecycle.check(TargetState(current), TargetState(new))
    assert lifecycle.allowed(TargetState(current), TargetState(new))
    assert lifecycle.reason(TargetState(current), TargetState(new)).strip()


@pytest.mark.parametrize(("current", "new"), sorted(p for p in PAIRS if p not in ALLOWED))
def test_refused_transition_names_both_states(current: str, new: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        lifecycle.check(TargetState(current), TargetState(new))
    assert caught.value.current == current
    assert caught.value.new == new
    assert f"{current} -> {new}" in str(caught.value)
    assert not lifecycle.allowed(TargetState(current), TargetState(new))


def test_illegal_transition_is_a_bug_not_an_expected_error() -> None:
    assert not issubclass(IllegalTransition, ImagesyncError)


def test_table_has_no_states_outside_the_enum() -> None:
    assert set(lifecycle.TRANSITIONS) == set(TargetState)
    for targets in lifecycle.TRANSITIONS.values():
        assert set(targets) <= set(TargetState)


def test_no_state_is_a_dead_end() -> None:
    """No dead ends: from every state some path leads to deleted (the end) or back to active."""
    for start in TargetState:
        seen, frontier = {start}, [start]
        while frontier:
            state = frontier.pop()
            for nxt in lifecycle.TRANSITIONS[state]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert TargetState.DELETED in seen or start is TargetState.DELETED
        assert TargetState.ACTIVE in seen
