"""The plan: a pure ``diff(desired lists, state, what each target holds, now, policy) -> Plan``.

No I/O and no clock: everything comes in as arguments, so every rule is a row in a table test. Every action
carries the reason an operator reads in the report. The rules, per target and list:

- a list that could not be fetched, verified or parsed is unknown: everything of it is kept (invariant 1);
- a verified but expired list retires its images when ``on_expiry: retire``, else keeps them;
- a listed image: keep if the target holds this version with this sha512 (update-metadata if the metadata
  changed or it was retired), update if it holds other versions, add otherwise (re-add if the state knew it);
- a held image no longer listed, outside the ``images:`` subset, or past its own expiry: retire;
- a held copy the driver reports misplaced (outside the project it belongs in), known to the state or not, is
  never current: the listed image is added again (an update that supersedes it), so the misplaced copy retires
  by the normal rules;
- images carrying our tag that the state does not know are adopted when identifier, version and sha512 match
  a listed image, otherwise only reported;
- retired images whose ``delete_after`` has elapsed are deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from imagesync.model import (
    Action,
    ActionKind,
    DesiredImage,
    Held,
    Known,
    ListDesire,
    Plan,
    RetireMode,
    TargetPolicy,
)
from imagesync.targets import properties

_ORDER: dict[ActionKind, int] = {"add": 0, "update": 1, "update-metadata": 2, "keep": 3, "retire": 4}


def diff(desired: Sequence[ListDesire], known: Mapping[str, Sequence[Known]],
         inventory: Mapping[str, Sequence[Held]], *, now: datetime, targets: Sequence[TargetPolicy]) -> Plan:
    """Plan every target independently. Pure: raises nothing for any consistent input."""
    actions: list[Action] = []
    notes: list[str] = []
    for target in targets:
        planner = _TargetPlanner(target, known.get(target.name, ()), now)
        actions += planner.plan(desired, inventory.get(target.name, ()))
        notes += planner.notes
    actions.sort(key=lambda a: (a.target, _ORDER[a.kind], a.list_name, a.identifier, a.version))
    return Plan(actions=tuple(actions), notes=tuple(notes))


class _TargetPlanner:
    def __init__(self, target: TargetPolicy, known: Sequence[Known], now: datetime) -> None:
        self.target = target
        self.now = now
        self.known = {k.target_id: k for k in known if k.target_id is not None}
        # Images that were in the target once: reconciliation has marked a vanished copy deleted by now.
        self.known_keys = {(k.list_name, k.identifier, k.version) for k in known if k.target_id is not None}
        self.notes: list[str] = []

    def plan(self, desired: Sequence[ListDesire], held: Sequence[Held]) -> list[Action]:
        by_list: dict[str | None, list[Held]] = defaultdict(list)
        for item in held:
            by_list[item.list_name].append(item)
        actions: list[Action] = []
        for lst in desired:
            actions += self._list(lst, by_list.pop(lst.name, []))
        for name, items in by_list.items():
            self.notes.append(f"target {self.target.name}: {len(items)} tagged image(s) of list {name or '(none)'}, "
                              "which is not configured, left alone")
        return actions

    def _list(self, lst: ListDesire, held: list[Held]) -> list[Action]:
        if lst.status == "failed" and not lst.expired:
            return [self._action(h, lst.name, "keep", f"list {lst.name} unavailable this run: its images are kept")
                    for h in held if h.active]
        if lst.expired:
            if lst.on_expiry == "keep":
                return [self._action(h, lst.name, "keep", f"list {lst.name} expired; on_expiry: keep")
                        for h in held if h.active]
            when = lst.expires.strftime("%Y-%m-%dT%H:%M:%SZ") if lst.expires else "?"
            return self._retire_all(held, lst.name, f"list {lst.name} expired on {when}")
        return self._listed(lst, held)

    def _listed(self, lst: ListDesire, held: list[Held]) -> list[Action]:
        wanted: dict[str, DesiredImage] = {}
        unwanted: dict[str, str] = {}
        for item in lst.images:
            image = item.image
            if lst.subset and image.identifier not in lst.subset:
                unwanted[image.identifier] = "not in the subscribed subset (images:)"
            elif image.expires is not None and image.expires <= self.now:
                unwanted[image.identifier] = f"image expired on {image.expires:%Y-%m-%dT%H:%M:%SZ}"
            else:
                wanted[image.identifier] = item
        by_id: dict[str, list[Held]] = defaultdict(list)
        for copy in held:
            by_id[copy.identifier or ""].append(copy)
        actions: list[Action] = []
        for identifier in lst.unknown:
            actions += [self._action(h, lst.name, "keep", f"{identifier}: unknown this run, kept as it is")
                        for h in by_id.pop(identifier, []) if h.active]
        for identifier, item in wanted.items():
            actions += self._image(item, by_id.pop(identifier, []))
        for identifier, items in by_id.items():
            reason = unwanted.get(identifier, f"removed from list {lst.name}")
            actions += self._retire_all(items, lst.name, reason)
        return actions

    def _image(self, item: DesiredImage, copies: list[Held]) -> list[Action]:
        image = item.image
        # A source that publishes no sha512 (OCI) names its bytes by the version itself (the manifest digest) until
        # they were seen once: then the version alone says "these bytes".
        matching = [h for h in copies if h.version == image.version and (h.sha512 == image.sha512 or not image.sha512)]
        current = [h for h in matching if not h.misplaced]
        # A matching copy in the wrong project is ours even when the state forgot it: it is moved, not left alone.
        strangers = [h for h in copies if h not in matching and h.target_id not in self.known]
        for h in strangers:
            self.notes.append(f"target {self.target.name}: tagged image {h.target_id} ({item.list_name}/"
                              f"{image.identifier} {h.version}) is unknown to the state and does not match the list: "
                              "left alone")
        older = [h for h in copies if h not in current and h not in strangers]
        if current:
            return self._present(item, current, older)
        live = [h for h in older if h.active]
        if live:
            return self._update(item, live, older)
        reason = "missing from target: re-add" if item.key in self.known_keys else "new image"
        return [self._new(item, "add", reason), *self._retire_inactive(older, item.list_name)]

    def _present(self, item: DesiredImage, current: list[Held], older: list[Held]) -> list[Action]:
        current.sort(key=lambda h: (not h.active, h.target_id not in self.known, h.target_id))
        chosen, duplicates = current[0], current[1:]
        adopt = chosen.target_id not in self.known
        if adopt:
            # Always rewrite: a run killed after the upload but before sharing left the rest undone.
            kind: ActionKind = "update-metadata"
            reason = "adopted: identifier, version and sha512 match the list"
        elif not chosen.active:
            kind, reason = "update-metadata", "listed again: reactivate"
        elif chosen.digest != properties.digest(item):
            kind, reason = "update-metadata", "metadata changed"
        else:
            kind, reason = "keep", "up to date"
        live_old = [h for h in older if h.active]
        inactive = self._retire_inactive([h for h in older if not h.active], item.list_name)
        if kind == "update-metadata" and not chosen.active:
            # Back to an older version: the newer ones retire only once this one is active again (invariant 3).
            retiring, kept = self._split_kept(live_old)
            action = self._new(item, kind, reason, target_id=chosen.target_id, adopt=adopt,
                               supersedes=tuple(h.target_id for h in retiring), retire_mode=self.target.retire_mode)
            duplicates_out = self._retire_all(duplicates, item.list_name, f"duplicate of {chosen.target_id}")
            return [action, *duplicates_out, *self._kept(item, kept), *inactive]
        actions = [self._new(item, kind, reason, target_id=chosen.target_id, adopt=adopt)]
        actions += self._retire_all(duplicates, item.list_name, f"duplicate of {chosen.target_id}")
        return actions + self._old_versions(item, live_old) + inactive

    def _update(self, item: DesiredImage, live: list[Held], older: list[Held]) -> list[Action]:
        image = item.image
        same_version = [h for h in live if h.version == image.version]
        if same_version and all(h.misplaced for h in same_version):
            reason = f"version {image.version} is held outside the project it belongs in: copied there"
        elif same_version:
            reason = f"sha512 of version {image.version} changed"
        else:
            reason = f"new version {image.version} (was {', '.join(sorted({h.version or '?' for h in live}))})"
        retiring, kept = self._split_kept(live)
        action = self._new(item, "update", reason, supersedes=tuple(h.target_id for h in retiring),
                           retire_mode=self.target.retire_mode)
        inactive = self._retire_inactive([h for h in older if not h.active], item.list_name)
        return [action, *self._kept(item, kept), *inactive]

    def _old_versions(self, item: DesiredImage, live_old: list[Held]) -> list[Action]:
        retiring, kept = self._split_kept(live_old)
        reason = f"superseded by version {item.image.version}"
        return [*(self._action(h, item.list_name, "retire", reason) for h in retiring), *self._kept(item, kept)]

    def _kept(self, item: DesiredImage, kept: list[Held]) -> list[Action]:
        reason = f"older version kept (keep_versions={self.target.keep_versions})"
        return [self._action(h, item.list_name, "keep", reason) for h in kept]

    def _split_kept(self, live_old: list[Held]) -> tuple[list[Held], list[Held]]:
        # Newest first by the state's record order: the state knows which copy came later.
        ordered = sorted(live_old, key=lambda h: -self.known[h.target_id].record_id if h.target_id in self.known else 0)
        keep = self.target.keep_versions
        return ordered[keep:], ordered[:keep]

    def _retire_all(self, held: list[Held], list_name: str, reason: str) -> list[Action]:
        tracked = [h for h in held if h.target_id in self.known]
        for h in held:
            if h not in tracked and h.active:
                self.notes.append(f"target {self.target.name}: tagged image {h.target_id} is unknown to the state: "
                                  f"not retired ({reason})")
        return ([self._action(h, list_name, "retire", reason) for h in tracked if h.active]
                + self._retire_inactive([h for h in tracked if not h.active], list_name))

    def _retire_inactive(self, held: list[Held], list_name: str) -> list[Action]:
        after = self.target.delete_after
        actions = []
        for h in held:
            record = self.known.get(h.target_id)
            if h.active or record is None:
                continue
            if self.target.retire_mode == "delete":
                # A delete the target refused last time (image in use) left it deactivated: try again.
                actions.append(self._action(h, list_name, "retire", "delete refused earlier: retrying",
                                            mode="delete"))
            elif after is not None and record.retired_at is not None and record.retired_at + after <= self.now:
                reason = f"retired on {record.retired_at:%Y-%m-%d}, delete_after elapsed"
                actions.append(self._action(h, list_name, "retire", reason, mode="delete"))
        return actions

    def _new(self, item: DesiredImage, kind: ActionKind, reason: str, *, target_id: str | None = None,
             supersedes: tuple[str, ...] = (), adopt: bool = False, retire_mode: RetireMode | None = None) -> Action:
        image = item.image
        return Action(target=self.target.name, list_name=item.list_name, identifier=image.identifier,
                      version=image.version, kind=kind, reason=reason, title=image.title, desired=item,
                      target_id=target_id, supersedes=supersedes, adopt=adopt, retire_mode=retire_mode)

    def _action(self, held: Held, list_name: str, kind: ActionKind, reason: str, *,
                mode: RetireMode | None = None) -> Action:
        return Action(target=self.target.name, list_name=list_name, identifier=held.identifier or "?",
                      version=held.version or "?", kind=kind, reason=reason, target_id=held.target_id,
                      retire_mode=(mode or self.target.retire_mode) if kind == "retire" else None)
