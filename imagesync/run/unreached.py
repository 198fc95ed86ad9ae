"""What a target that could not be reached would have had done: its adds and updates, each reported failed.

A target whose login or listing failed is not planned against: what it holds is unknown, and nothing unseen is
retired or rewritten (invariant 1). Its operator still needs to know which images it now lacks, one line each
like any failed upload, in the report, the metrics and the hooks. So the plan is made once more for it from the
state's memory alone: the images the state last saw active there stand in for its inventory, and every add and
update that plan contains becomes a failed result carrying the target's own error. Retirements, metadata
rewrites and keeps are left out: they would act on images nobody has seen this run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from imagesync.model import Held, Known, ListDesire, TargetPolicy
from imagesync.run.plan import diff
from imagesync.run.results import ActionResult, log_action

_LIVE = ("active", "superseded")
_MISSED = ("add", "update")


def remembered(known: Sequence[Known]) -> list[Held]:
    """The images the state last saw live in a target, as an inventory would show them. Pure."""
    return [Held(target_id=k.target_id, list_name=k.list_name, identifier=k.identifier, version=k.version,
                 sha512=k.sha512) for k in known if k.target_id is not None and k.state in _LIVE]


def missed(desired: Sequence[ListDesire], known: Mapping[str, Sequence[Known]], errors: Mapping[str, str],
           *, now: datetime, targets: Sequence[TargetPolicy]) -> list[ActionResult]:
    """The adds and updates each unreached target (``errors``: target -> why it failed) would have been given,
    as failed results with that error, logged like every action's. Raises nothing for consistent input."""
    policies = [t for t in targets if t.name in errors]
    plan = diff(desired, known, {t.name: remembered(known.get(t.name, ())) for t in policies}, now=now,
                targets=policies)
    results = [ActionResult(a, "failed", errors[a.target]) for a in plan.actions if a.kind in _MISSED]
    for result in results:
        log_action(result)
    return results
