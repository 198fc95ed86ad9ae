"""The list stage of a run: for each subscribed list, conditional fetch -> verify -> parse -> check, with the
state's memory (validators, last verified copy, last accepted creation date). Failures are outcomes, not raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from imagesync.config.settings import ListSettings, Settings
from imagesync.errors import EndorserMismatchError, FetchError, ImagesyncError, ListExpiredError, StateError
from imagesync.model import DesiredImage, ListDesire, ListState, Signer
from imagesync.net.policy import FetchPolicy
from imagesync.sources.base import SourceOutcome
from imagesync.sources.hepix import gpg
from imagesync.sources.hepix.accept import AcceptedList, Expectation, Verifier, accept
from imagesync.sources.hepix.fetch import Fetcher
from imagesync.sources.hepix.parse import check_freshness
from imagesync.state.store import ListRecord, StateStore
from imagesync.util import redact
from imagesync.util.logfields import fields

log = logging.getLogger(__name__)


def expectation(item: ListSettings) -> Expectation:
    return Expectation(signature=item.signature, endorser=item.endorser, gpg_fingerprints=item.gpg_fingerprints)


def make_verifier(settings: Settings) -> Verifier:
    trust = settings.trust
    return Verifier(ca_dir=trust.ca_dir, crl=trust.crl, gpg_home=trust.gpg_home, allow_sha1=trust.allow_sha1)


def make_fetcher(settings: Settings) -> Fetcher:
    download = settings.download
    ca_dir = settings.trust.ca_dir if settings.trust.ca_dir.is_dir() else None
    return Fetcher(FetchPolicy(timeout=download.timeout, retries=download.retries, backoff=download.backoff,
                               max_delay=download.max_delay, max_bytes=download.max_list_size, ca_dir=ca_dir))


def selected(settings: Settings, names: tuple[str, ...] = ()) -> list[ListSettings]:
    """The lists a run works on: the named ones, else every enabled one."""
    return [item for item in settings.lists if (item.name in names if names else item.enabled)]


@dataclass
class ListStage:
    """Runs the list stage for one run; ``store`` is None for commands that keep no state (verify)."""

    fetcher: Fetcher
    verifier: Verifier
    now: datetime
    store: StateStore | None = None
    record: bool = True
    seen: dict[str, str] = field(default_factory=dict)  # dc:identifier -> the first list of the run carrying it

    def load(self, item: ListSettings) -> SourceOutcome:
        """One list, isolated: whatever goes wrong becomes a ``failed`` outcome with a one-line error."""
        previous = self.store.get_list(item.name) if self.store is not None else None
        try:
            raw = self._raw(item, previous)
            accepted = accept(raw.content, expectation(item), self.verifier, source=item.name, now=self.now,
                              detached=self._detached_signature(item, raw.content), fresh=False)
            check_freshness(accepted.image_list, now=self.now, source=item.name,
                            previous_created=self._previous_created(item))
            self._first_of_its_kind(item, accepted.image_list.identifier)
            status: ListState = "unchanged" if raw.unchanged else "ok"
            self._record_ok(item, raw, accepted)
        except ListExpiredError as exc:
            # Verified, endorsed and not a rollback, only past its expiry: on_expiry decides (plan.py).
            return self._failed(item, exc, expired=accepted.image_list.expires, signer=accepted.signer)
        except ImagesyncError as exc:
            return self._failed(item, exc, signer=exc.signer if isinstance(exc, EndorserMismatchError) else None)
        except Exception as exc:
            # A bug must not cost the other lists their run (DESIGN invariant 6); the traceback goes to -v.
            log.debug("list=%s unexpected error", item.name, exc_info=True)
            return self._failed(item, ImagesyncError(f"unexpected error: {type(exc).__name__}: {exc} "
                                                     "(run with -v for details)"))
        log.info("list accepted", extra=fields(list=item.name, result=status, signature=accepted.verified.kind,
                                                images=len(accepted.image_list.images)))
        return SourceOutcome(settings=item, status=status, error=None, accepted=accepted,
                           desire=desire(item, accepted, status))

    def _first_of_its_kind(self, item: ListSettings, identifier: str) -> None:
        # Two subscriptions to one list (two URLs, one dc:identifier) would upload every image twice.
        first = self.seen.setdefault(identifier, item.name)
        if first != item.name:
            raise ImagesyncError(f"same list as {first} (dc:identifier {identifier}) at another URL",
                                 hint=f"subscribe to it once; its images are synced through {first}")

    def _previous_created(self, item: ListSettings) -> datetime | None:
        # Rollback history belongs to the URL: a list moved to another publisher starts afresh.
        return self.store.previous_created(item.name, url=item.url) if self.store is not None else None

    def _raw(self, item: ListSettings, previous: ListRecord | None) -> _Raw:
        # Validators are only sent when the verified copy they belong to is stored: a 304 must have a copy to reuse.
        cached = previous.cache_for(item.url) if previous is not None else None
        etag, modified = (cached[0], cached[1]) if cached else (None, None)
        fetched = self.fetcher.fetch(item.url, name=item.name, token=item.token, etag=etag, last_modified=modified)
        if fetched.not_modified:
            if cached is None:
                raise FetchError("server answered 304 Not Modified but no verified copy is stored", subject=item.name)
            return _Raw(cached[2], True, etag, modified)
        if fetched.content is None:
            raise FetchError("empty answer", subject=item.name)
        return _Raw(fetched.content, False, fetched.etag, fetched.last_modified)

    def _detached_signature(self, item: ListSettings, raw: bytes) -> bytes | None:
        if item.signature != "gpg" or gpg.is_clearsigned(raw):
            return None
        url = item.signature_url or f"{item.url}.asc"
        content = self.fetcher.fetch(url, name=f"{item.name} (signature)", token=item.token).content
        if content is None:
            raise FetchError("signature answered 304 Not Modified to an unconditional request", subject=item.name)
        return content

    def _failed(self, item: ListSettings, exc: ImagesyncError, *, expired: datetime | None = None,
                signer: Signer | None = None) -> SourceOutcome:
        message = redact.text(exc.about(item.name).one_line())
        # ERROR for every kind of failure, an expired or refused list too: the run exits non-zero because of it.
        log.error("list failed", extra=fields(list=item.name, result="failed", error=message))
        if self.store is not None and self.record:
            try:
                self.store.record_list_failed(item.name, url=redact.url(item.url), error=message, at=self.now)
            except StateError as write:
                log.error("list=%s cannot record the failure in the state: %s", item.name, write.one_line())
        wish = ListDesire(name=item.name, status="failed", expired=expired is not None, expires=expired,
                          on_expiry=item.on_expiry)
        return SourceOutcome(settings=item, status="failed", error=message, accepted=None, desire=wish, signer=signer)

    def _record_ok(self, item: ListSettings, raw: _Raw, accepted: AcceptedList) -> None:
        if self.store is None or not self.record:
            return
        lst, signer = accepted.image_list, accepted.signer
        store = self.store
        try:
            # One step: the accepted copy and its images are remembered together or not at all.
            with store.step():
                store.record_list_ok(item.name, url=redact.url(item.url), etag=raw.etag,
                                     last_modified=raw.last_modified, raw=raw.content, identifier=lst.identifier,
                                     created=lst.created, expires=lst.expires,
                                     signer_dn=signer.dn if signer else None,
                                     signer_ca=signer.ca if signer else None, unchanged=raw.unchanged, at=self.now)
                for image in lst.images:
                    store.upsert_image(item.name, image, at=self.now)
        except StateError as exc:
            raise ImagesyncError(f"cannot record the list in the state: {exc.one_line()}") from exc


@dataclass(frozen=True)
class _Raw:
    content: bytes
    unchanged: bool
    etag: str | None
    last_modified: str | None


def desire(item: ListSettings, accepted: AcceptedList, status: ListState) -> ListDesire:
    """What an accepted list wants, with the per-list settings (prefix, VO override, subset) applied."""
    lst = accepted.image_list
    images = tuple(DesiredImage(list_name=item.name, list_identifier=lst.identifier, image=image, prefix=item.prefix,
                                vo=item.vo or image.vo or lst.vo) for image in lst.images)
    return ListDesire(name=item.name, status=status, expires=lst.expires, images=images, subset=item.images,
                      on_expiry=item.on_expiry)
