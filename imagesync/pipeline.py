"""Composes the stages of a run. For now: fetch -> verify -> parse -> check for each subscribed list."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from imagesync import gpg, redact
from imagesync.accept import AcceptedList, Expectation, Verifier, accept
from imagesync.config import ListSettings, Settings
from imagesync.errors import ImagesyncError
from imagesync.fetch import Fetcher, FetchPolicy

log = logging.getLogger(__name__)
ListStatus = Literal["ok", "unchanged", "failed"]


@dataclass(frozen=True)
class ListOutcome:
    settings: ListSettings
    status: ListStatus
    error: str | None
    accepted: AcceptedList | None


def expectation(item: ListSettings) -> Expectation:
    return Expectation(signature=item.signature, endorser=item.endorser, gpg_fingerprints=item.gpg_fingerprints)


def make_verifier(settings: Settings) -> Verifier:
    trust = settings.trust
    return Verifier(ca_dir=trust.ca_dir, crl=trust.crl, gpg_home=trust.gpg_home, allow_sha1=trust.allow_sha1)


def make_fetcher(settings: Settings) -> Fetcher:
    download = settings.download
    ca_dir = settings.trust.ca_dir if settings.trust.ca_dir.is_dir() else None
    return Fetcher(FetchPolicy(timeout=download.timeout, retries=download.retries,
                               max_bytes=download.max_list_size, ca_dir=ca_dir))


def collect_lists(settings: Settings, *, now: datetime, names: tuple[str, ...] = (),
                  fetcher: Fetcher | None = None, verifier: Verifier | None = None) -> list[ListOutcome]:
    """Fetch, verify, parse and check every enabled (or every named) list; failures are outcomes, not raises."""
    chosen = [item for item in settings.lists if (item.name in names if names else item.enabled)]
    own_fetcher = fetcher is None
    fetcher = fetcher or make_fetcher(settings)
    verifier = verifier or make_verifier(settings)
    try:
        return [load_list(item, fetcher, verifier, now=now) for item in chosen]
    finally:
        if own_fetcher:
            fetcher.close()


def load_list(item: ListSettings, fetcher: Fetcher, verifier: Verifier, *, now: datetime,
              previous_created: datetime | None = None) -> ListOutcome:
    """One list, isolated: whatever goes wrong becomes a ``failed`` outcome with a one-line error."""
    try:
        raw = _content(fetcher.fetch(item.url, name=item.name, token=item.token).content, item.name)
        detached = _detached_signature(item, raw, fetcher)
        accepted = accept(raw, expectation(item), verifier, source=item.name, now=now,
                          previous_created=previous_created, detached=detached)
    except ImagesyncError as exc:
        message = exc.about(item.name).one_line()
        log.info("list=%s result=failed error=%s", item.name, message)
        return ListOutcome(settings=item, status="failed", error=message, accepted=None)
    except Exception as exc:
        # A bug must not cost the other lists their run (DESIGN invariant 6); the traceback goes to -v.
        log.debug("list=%s unexpected error", item.name, exc_info=True)
        message = redact.text(f"{item.name}: unexpected error: {type(exc).__name__}: {exc} (run with -v for details)")
        log.info("list=%s result=failed error=%s", item.name, message)
        return ListOutcome(settings=item, status="failed", error=message, accepted=None)
    log.info("list=%s result=ok signature=%s images=%d", item.name, accepted.verified.kind,
             len(accepted.image_list.images))
    return ListOutcome(settings=item, status="ok", error=None, accepted=accepted)


def _content(content: bytes | None, name: str) -> bytes:
    if content is None:
        raise ImagesyncError("server answered 304 Not Modified to an unconditional request", subject=name)
    return content


def _detached_signature(item: ListSettings, raw: bytes, fetcher: Fetcher) -> bytes | None:
    if item.signature != "gpg" or gpg.is_clearsigned(raw):
        return None
    url = item.signature_url or f"{item.url}.asc"
    return _content(fetcher.fetch(url, name=f"{item.name} (signature)", token=item.token).content, item.name)
