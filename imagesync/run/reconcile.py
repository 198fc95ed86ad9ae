"""Before any plan: bring every state record in line with what its target really holds.

The target is the truth of what exists; the state is only the memory of why (invariant 4). A run killed between
a target operation and the state write that records it (a retirement, a reactivation, a delete) leaves the two
disagreeing, and the plan alone cannot repair that: an image that left its list is never planned again. So every
run, dry or not, corrects each live record of each reachable target, whatever list it belongs to:

==========================================  =====================  ==========
the target holds the record's image ...      record state           becomes
==========================================  =====================  ==========
not at all                                   any but deleted        deleted
inactive (deactivated, hidden, retired/)     active, superseded     retired
active                                       retired, superseded    active
==========================================  =====================  ==========

A retirement the state learns of this way is dated now: ``delete_after`` counts from the first run that saw it,
at most one run interval later than the crash, never earlier. Records without a target id (pending, downloaded,
uploading, failed before an upload) are the plan's business: an upload that finished unrecorded shows up in the
target as an image the state does not know by id, and the plan adopts it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from imagesync.model import Held
from imagesync.state.lifecycle import TargetState, allowed
from imagesync.state.store import StateStore, TargetImageRecord

log = logging.getLogger(__name__)
S = TargetState
GONE = "no longer in the target"


@dataclass(frozen=True)
class Correction:
    """One record whose state the target contradicts, and the state the target says it is in."""

    record: TargetImageRecord
    new: TargetState
    why: str


def corrections(records: Sequence[TargetImageRecord], held: Sequence[Held]) -> list[Correction]:
    """The corrections that make ``records`` (of one target) agree with ``held`` (its inventory). Pure."""
    by_id = {h.target_id: h for h in held}
    found: list[Correction] = []
    for record in records:
        if record.target_id is None or record.state == S.DELETED:
            continue
        image = by_id.get(record.target_id)
        if image is None:
            new, why = S.DELETED, GONE
        elif image.active:
            new, why = S.ACTIVE, "active in the target"
        else:
            new, why = S.RETIRED, "retired in the target"
        if new != record.state and allowed(record.state, new) and _contradicts(record.state, new):
            found.append(Correction(record, new, why))
    return found


def _contradicts(state: TargetState, truth: TargetState) -> bool:
    # Only a live state can be contradicted by a live image: a failed record keeps its error for the plan.
    return truth == S.DELETED or state in (S.ACTIVE, S.SUPERSEDED, S.RETIRED)


def reconcile(store: StateStore, inventory: Mapping[str, Sequence[Held]], now: datetime) -> list[Correction]:
    """Apply the corrections of every target in ``inventory`` (the reachable ones) to ``store``; return them.

    Raises StateError when the state cannot be written.
    """
    applied: list[Correction] = []
    for target, held in inventory.items():
        for fix in corrections(store.target_images(target=target), held):
            record = fix.record
            store.transition(record.id, fix.new, at=now, error=GONE if fix.new == S.DELETED else None)
            log.info("target=%s list=%s image=%s version=%s target_id=%s reconciled state=%s->%s (%s)", target,
                     record.list_name, record.identifier, record.version, record.target_id, record.state.value,
                     fix.new.value, fix.why)
            applied.append(fix)
    return applied
