"""``imagesync check``: the doctor. Every check reports instead of raising, so one problem never hides another."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from imagesync.config import preflight
from imagesync.config.settings import Settings, TargetSettings
from imagesync.errors import ConfigError, ImagesyncError
from imagesync.images.convert import qemu_img_available
from imagesync.net.guard import HINT, AddressGuard, AddressRefused
from imagesync.sources.base import SourceOutcome
from imagesync.sources.collect import collect
from imagesync.sources.hepix import dn
from imagesync.sources.hepix.castore import CAStore
from imagesync.targets import base as drivers
from imagesync.targets import properties


@dataclass(frozen=True)
class Finding:
    area: str
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, *, now: datetime) -> list[Finding]:
    """Config, state and cache directories, CA directory, lists, per target its mapping, reachability and
    projects, disk space and qemu-img, in that order. Raises nothing for what it checks (each is a finding)."""
    findings = [Finding("config", str(settings.source), True,
                        f"{len(settings.lists)} list(s), {len(settings.targets)} target(s)")]
    findings += [_writable(settings.state_dir, "state_dir"), _writable(settings.cache_dir, "cache_dir")]
    findings += _ca_dir(settings, now)
    outcomes = collect(settings, now=now)
    findings += [Finding("list", o.settings.name, o.status != "failed",
                         o.error or f"verified, {o.accepted.image_count if o.accepted else 0} images"
                         + (", UNSIGNED" if o.settings.signature == "none" else ""))
                 for o in outcomes]
    guard = AddressGuard(settings.download.allowed_networks)
    findings += [finding for o in outcomes if (finding := _image_urls(o, guard)) is not None]
    for target in settings.targets:
        findings += _mapping(target, outcomes)
        findings += _target(target)
    findings += [_disk(settings), _qemu()]
    return findings


def _writable(path: Path, key: str) -> Finding:
    problem = preflight.writable_dir(path, key, None, mode="0700" if key == "state_dir" else "0750")
    return Finding("dir", key, problem is None, problem.one_line() if problem else f"{path} writable")


def _mapping(target: TargetSettings, outcomes: list[SourceOutcome]) -> list[Finding]:
    """The projects_file of a target sharing by VO: readable, and naming every VO the subscribed lists carry."""
    try:
        refs = preflight.load_mapping(target)
    except ConfigError as exc:
        return [Finding("mapping", target.name, False, exc.one_line())]
    if refs is None:
        return []
    wanted: dict[str, set[str]] = {}
    for outcome in outcomes:
        for item in outcome.desire.images:
            if not outcome.desire.subset or item.image.identifier in outcome.desire.subset:
                wanted.setdefault(properties.vo_of(item) or "(none)", set()).add(outcome.settings.name)
    unmapped = sorted(vo for vo in wanted if vo not in refs)
    if not unmapped:
        return [Finding("mapping", target.name, True, f"{target.projects_file}: {len(refs)} VO(s), every VO of "
                        f"the subscribed lists mapped ({len(wanted)})")]
    detail = "; ".join(f"VO {vo} (list {', '.join(sorted(wanted[vo]))})" for vo in unmapped)
    return [Finding("mapping", target.name, False, f"{len(unmapped)} VO(s) of the subscribed lists have no project "
                    f"in {target.projects_file}: {detail} (add them, or their images fail)")]


def _ca_dir(settings: Settings, now: datetime) -> list[Finding]:
    where = str(settings.trust.ca_dir)
    try:
        store = CAStore.load(settings.trust.ca_dir, settings.trust.crl)
    except ImagesyncError as exc:
        return [Finding("ca_dir", where, False, exc.one_line())]
    crls = [crl for group in store.crls.values() for crl in group]
    findings = [Finding("ca_dir", where, True, f"{len(store.anchors)} CAs, {len(crls)} CRLs, crl: {store.crl_mode}")]
    stale = sorted(dn.render(c.issuer) for c in crls if c.next_update_utc is not None and c.next_update_utc < now)
    if stale:
        findings.append(Finding("ca_dir", "stale CRLs", False, f"{len(stale)} stale, e.g. {stale[0]} (run fetch-crl)"))
    if settings.trust.crl == "require":
        missing = sorted(dn.render(a.subject) for a in store.anchors if a.subject not in store.crls)
        if missing:
            findings.append(Finding("ca_dir", "missing CRLs", False,
                                    f"{len(missing)} CA(s) without CRL (crl: require), e.g. {missing[0]}"))
    return findings


def _image_urls(outcome: SourceOutcome, guard: AddressGuard) -> Finding | None:
    """A failed finding if downloads would refuse image URLs of this list (resolved now, as a sync would)."""
    refused: list[str] = []
    for image in (desired.image for desired in outcome.desire.images):
        try:
            guard.check_url(image.uri)
        except AddressRefused as exc:
            refused.append(f"{image.identifier}: {exc}")
    if not refused:
        return None
    return Finding("list", f"{outcome.settings.name} image URLs", False,
                   f"{len(refused)} of {len(outcome.desire.images)} would be refused, e.g. {refused[0]} ({HINT})")


def _target(target: TargetSettings) -> list[Finding]:
    try:
        driver = drivers.load(target)
        try:
            held = driver.inventory()
            detail = f"reachable, {len(held)} image(s) tagged {target.tag}"
            projects = _projects(target, driver)
        finally:
            driver.close()
    except ImagesyncError as exc:
        return [Finding("target", target.name, False, exc.one_line())]
    return [Finding("target", target.name, True, detail), *projects]


def _projects(target: TargetSettings, driver: object) -> list[Finding]:
    # Only drivers that share with mapped projects (Glance) have something to resolve: each VO on its own, so
    # one missing project never hides whether the others are right.
    resolve: Callable[[], dict[str, str | ImagesyncError]] | None = getattr(driver, "mapped_projects", None)
    if resolve is None:
        return []
    return [Finding("project", f"{target.name} VO {vo}", not isinstance(found, ImagesyncError),
                    found.one_line() if isinstance(found, ImagesyncError) else f"project id {found}")
            for vo, found in sorted(resolve().items())]


def _disk(settings: Settings) -> Finding:
    path: Path = settings.cache_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    need = settings.download.min_free_space
    return Finding("disk", str(settings.cache_dir), free >= need,
                   f"{free / 1024**3:.1f} GiB free, min_free_space {need / 1024**3:.1f} GiB")


def _qemu() -> Finding:
    path = qemu_img_available()
    return Finding("tool", "qemu-img", path is not None, path or "not found: install qemu-utils (Debian)")
