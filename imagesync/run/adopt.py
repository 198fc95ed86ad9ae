"""Taking over images another tool uploaded (cloudkeeper-os, atrope and the EGI fork of atrope) without uploading
them again.

A foreign image is adopted only when it is provably what a source wants (:mod:`imagesync.run.adopt_match`: the
identifier and sha512 of a listed image, or the manifest and layer digest a registry still serves): then it gets
our tag and properties and the state records it, with its sha512. Anything else is reported and left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from imagesync.config.settings import Settings
from imagesync.errors import ImagesyncError
from imagesync.model import DesiredImage
from imagesync.run import lock
from imagesync.run.adopt_match import by_identifier, match
from imagesync.run.pipeline import open_state
from imagesync.sources.base import Context
from imagesync.sources.collect import opened
from imagesync.state.lifecycle import TargetState
from imagesync.state.store import StateStore
from imagesync.targets.glance.driver import GlanceDriver
from imagesync.targets.glance.foreign import ATROPE_TAGS, Foreign

log = logging.getLogger(__name__)
Source = Literal["cloudkeeper-os", "atrope"]


@dataclass(frozen=True)
class Adoption:
    target: str
    image_id: str
    identifier: str | None
    status: Literal["adopted", "planned", "skipped", "failed"]
    reason: str


def adopt(settings: Settings, *, source: Source, dry_run: bool, targets: tuple[str, ...],
          clock: Callable[[], datetime], tags: tuple[str, ...] = ATROPE_TAGS) -> list[Adoption]:
    """Adopt matching foreign images in every Glance target (atrope's: those carrying any of ``tags``). Raises
    LockHeldError, ConfigError."""
    now = clock()
    with ExitStack() as stack:
        if not dry_run:
            stack.enter_context(lock.acquire(settings.state_dir))
        store = stack.enter_context(open_state(settings, dry_run))
        with opened(Context(settings=settings, now=now, store=store, record=not dry_run)) as sources:
            outcomes = [source.load() for source in sources]
        wanted = by_identifier(d for o in outcomes for d in o.desire.images)
        results: list[Adoption] = []
        for target in settings.targets:
            if target.driver != "glance" or (targets and target.name not in targets):
                continue
            driver = GlanceDriver(target)
            stack.callback(driver.close)
            results += list(_target(driver, source, wanted, tags=tags, store=store, dry_run=dry_run, now=now))
    return results


def _target(driver: GlanceDriver, source: Source, wanted: Mapping[str, list[DesiredImage]], *,
            tags: tuple[str, ...], store: StateStore, dry_run: bool, now: datetime) -> Iterator[Adoption]:
    try:
        foreign = driver.foreign(source, tags=tags)
    except ImagesyncError as exc:
        yield Adoption(driver.name, "-", None, "failed", exc.one_line())
        return
    for image in foreign:
        found = match(image, wanted)
        desired = found.desired
        if desired is None:
            yield Adoption(driver.name, image.id, image.identifier, "skipped", found.reason)
            continue
        live = store.find_target_image(target=driver.name, list_name=desired.list_name,
                                       identifier=desired.image.identifier, version=desired.image.version)
        if live is not None and live.target_id not in (None, image.id):
            yield Adoption(driver.name, image.id, image.identifier, "skipped",
                           f"already managed as {live.target_id}: left alone")
            continue
        if dry_run:
            yield Adoption(driver.name, image.id, image.identifier, "planned", found.reason)
            continue
        try:
            driver.take_over(image.id, desired)
        except ImagesyncError as exc:
            yield Adoption(driver.name, image.id, image.identifier, "failed", exc.one_line())
            continue
        _record(store, driver.name, desired, image.id, now)
        log.info("target=%s image=%s adopted from %s as %s", driver.name, image.id, source, image.identifier)
        yield Adoption(driver.name, image.id, image.identifier, "adopted", found.reason)


def _record(store: StateStore, target: str, desired: DesiredImage, image_id: str, now: datetime) -> None:
    image = desired.image
    record = store.new_target_image(target=target, list_name=desired.list_name, identifier=image.identifier,
                                    version=image.version, sha512=image.sha512, at=now)
    for state in (TargetState.DOWNLOADED, TargetState.UPLOADING):
        if record.state == TargetState.PENDING or (record.state == TargetState.DOWNLOADED
                                                   and state == TargetState.UPLOADING):
            record = store.transition(record.id, state, at=now)
    store.transition(record.id, TargetState.ACTIVE, target_id=image_id, at=now)
    if image.sha512:
        # A registry publishes no sha512: remember Glance's, so the plans of later runs compare it (keep).
        store.remember_sha512(record.id, list_name=desired.list_name, identifier=image.identifier,
                              version=image.version, sha512=image.sha512, at=now)


__all__ = ["Adoption", "Foreign", "adopt"]
