"""The lifecycle of one image in one target: the only place its states and transitions are written down.

``pending → downloaded → uploading → active → superseded → retired → deleted``, plus ``failed`` (retried next
run). Every write of a state goes through :func:`check`; an illegal transition is a bug in the caller, so it
raises :class:`IllegalTransition` (not an ``ImagesyncError``: it must never be reported as an ordinary failure).
A failure that leaves an image where it was (a metadata update, a retirement or a deletion that did not go
through) is not a transition: it is recorded as the record's error while the state stays put.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class TargetState(StrEnum):
    PENDING = "pending"
    DOWNLOADED = "downloaded"
    UPLOADING = "uploading"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    RETIRED = "retired"
    DELETED = "deleted"
    FAILED = "failed"


class IllegalTransition(Exception):
    """A caller asked for a transition the lifecycle does not allow."""

    def __init__(self, current: TargetState, new: TargetState) -> None:
        self.current = current
        self.new = new
        super().__init__(f"illegal target image transition {current.value} -> {new.value}")


S = TargetState

# new state -> why it may follow, per current state. The "why" is the documentation; tests read only the keys.
TRANSITIONS: Mapping[TargetState, Mapping[TargetState, str]] = {
    S.PENDING: {
        S.DOWNLOADED: "the bytes were downloaded and matched the list's sha512 and size",
        S.FAILED: "download or checksum failed; retried next run",
        S.DELETED: "withdrawn from its list before anything reached the target: nothing to clean up",
    },
    S.DOWNLOADED: {
        S.UPLOADING: "the upload to the target started (recorded first, so a crash leaves a trace to reconcile)",
        S.FAILED: "conversion or the start of the upload failed; retried next run",
        S.DELETED: "withdrawn from its list before the upload: nothing to clean up",
    },
    S.UPLOADING: {
        S.ACTIVE: "the target holds the image and its checksum matched",
        S.FAILED: "the upload or the post-upload checksum failed (the target copy is removed); retried next run",
    },
    S.ACTIVE: {
        S.ACTIVE: "metadata refreshed in place; a failed refresh keeps it active and records the error",
        S.SUPERSEDED: "a newer version is active in the target (upload first, retire after)",
        S.RETIRED: "a verified list no longer carries it, or validly expired; or the target shows it retired",
        S.DELETED: "gone from the target (removed by an operator, or retire mode delete): the target is the truth",
    },
    S.SUPERSEDED: {
        S.RETIRED: "beyond keep_versions, retired per policy; or the target shows it retired",
        S.ACTIVE: "the version that superseded it vanished, so this one serves again",
        S.DELETED: "gone from the target (removed by an operator, or retire mode delete)",
    },
    S.RETIRED: {
        S.DELETED: "delete_after elapsed and the target deleted it, or it vanished from the target",
        S.ACTIVE: "its list carries it again and it was re-activated, or the target shows it active",
    },
    S.FAILED: {
        S.PENDING: "retried next run from the start",
        S.DOWNLOADED: "retried next run with the bytes already in the cache",
        S.UPLOADING: "retried next run straight to the upload",
        S.ACTIVE: "the target turned out to hold it after all (the upload finished after we gave up): adopted",
        S.DELETED: "given up: withdrawn from its list, nothing left in the target",
    },
    S.DELETED: {
        S.PENDING: "re-added after a manual deletion, with its list still carrying it",
    },
}

# States a record can leave only by being re-added: find/new_target_image look past records in these.
TERMINAL: frozenset[TargetState] = frozenset({S.DELETED})


def allowed(current: TargetState, new: TargetState) -> bool:
    """Whether ``current -> new`` is a transition of the lifecycle."""
    return new in TRANSITIONS[current]


def reason(current: TargetState, new: TargetState) -> str:
    """Why ``current -> new`` is allowed. Raises IllegalTransition when it is not."""
    check(current, new)
    return TRANSITIONS[current][new]


def check(current: TargetState, new: TargetState) -> None:
    """Accept an allowed transition. Raises IllegalTransition (a bug in the caller) naming both states."""
    if not allowed(current, new):
        raise IllegalTransition(current, new)
