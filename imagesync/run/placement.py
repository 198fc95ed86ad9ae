"""What each planned action means in its target: the image's name there, its VO and project, format and size.

The planner (:mod:`imagesync.run.plan`) is pure and knows nothing of targets. After it, each target's driver is
asked where an image would go (``placement``, optional for drivers: without it the image's default name is
shown); what a driver cannot place (a VO without a project) makes that action a planned failure, reported in
the plan and never tried in the run, so no image is downloaded for an upload bound to fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from imagesync.errors import ImagesyncError
from imagesync.images.detect import expected_format
from imagesync.model import Action, DesiredImage, Held, Placement, Plan
from imagesync.run.execute import ActionResult, TargetRuntime
from imagesync.run.results import log_action
from imagesync.targets import properties

log = logging.getLogger(__name__)
PlaceFn = Callable[[DesiredImage, str | None], Placement]


def place(plan: Plan, runtimes: Mapping[str, TargetRuntime], inventory: Mapping[str, Sequence[Held]]) -> Plan:
    """``plan`` with every action of a reachable target carrying its :class:`Placement`."""
    held: dict[tuple[str, str | None], Held] = {(target, h.target_id): h for target, items in inventory.items()
                                                for h in items}
    actions = tuple(replace(a, placement=_placement(a, runtimes, held)) if a.target in runtimes else a
                    for a in plan.actions)
    return replace(plan, actions=actions)


def _placement(action: Action, runtimes: Mapping[str, TargetRuntime],
               held: Mapping[tuple[str, str | None], Held]) -> Placement | None:
    runtime = runtimes[action.target]
    if action.desired is not None:
        return _desired(action, action.desired, runtime)
    copy = held.get((action.target, action.target_id))
    if copy is None:
        return None
    return Placement(name=copy.name or copy.target_id, vo=copy.vo, format=copy.disk_format, size=copy.size)


def _desired(action: Action, desired: DesiredImage, runtime: TargetRuntime) -> Placement:
    fmt, source = target_format(desired.image.format, runtime.formats, f"{action.list_name}/{action.identifier}")
    driver_place: PlaceFn | None = getattr(runtime.driver, "placement", None)
    try:
        where = (driver_place(desired, fmt) if driver_place is not None
                 else Placement(name=properties.image_name(desired), vo=properties.vo_of(desired)))
    except ImagesyncError as exc:
        # Cannot ask (the cloud stopped answering): what the run would meet too, so it is this action's problem.
        where = Placement(name=properties.image_name(desired), vo=properties.vo_of(desired), problem=exc.one_line())
    return replace(where, format=fmt, convert_from=source, size=desired.image.size)


def target_format(declared: str | None, accepted: Sequence[str], name: str) -> tuple[str | None, str | None]:
    """(format the target will receive, hv:format it is converted from or None) as the list declares it.

    Pure. Conversion goes to the first accepted format that is not ``iso`` (as :func:`imagesync.images.convert.prepare`
    does); without a declaration only the bytes will tell (None, None).
    """
    expected = expected_format(declared, name)
    if expected is None:
        return None, None
    if not accepted or expected in accepted:
        return expected, None
    into = next((fmt for fmt in accepted if fmt != "iso"), accepted[0])
    return into, expected


def dry_results(plan: Plan) -> list[ActionResult]:
    """A dry run's results: every non-keep action ``planned``, a blocked one ``failed`` with its reason."""
    return [ActionResult(a, "failed", a.blocked, a.target_id) if a.blocked
            else ActionResult(a, "done" if a.kind == "keep" else "planned", None, a.target_id) for a in plan.actions]


def split_blocked(plan: Plan) -> tuple[Plan, list[ActionResult]]:
    """The plan without its blocked actions, and those as failed results (logged like every action's)."""
    failed = [ActionResult(a, "failed", a.blocked, a.target_id) for a in plan.actions if a.blocked]
    for result in failed:
        log_action(result)
    return replace(plan, actions=tuple(a for a in plan.actions if not a.blocked)), failed
