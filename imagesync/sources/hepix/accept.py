"""Fetched bytes -> an accepted list: signature (S/MIME, GPG or explicitly none), HEPiX parse, endorser, expiry
and rollback. Everything a list must pass before any of its images may reach a target (DESIGN invariant 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from imagesync.config.settings import Endorser, SignatureMode
from imagesync.errors import EndorserMismatchError, ImagesyncError
from imagesync.model import ImageList, Signer, VerifiedContent
from imagesync.sources.hepix import dn, gpg, smime
from imagesync.sources.hepix import parse as hepix
from imagesync.sources.hepix.castore import CAStore, CrlMode


@dataclass(frozen=True)
class Expectation:
    """What one list must satisfy, from its configuration (or from ``verify``'s options)."""

    signature: SignatureMode = "smime"
    endorser: Endorser | None = None
    gpg_fingerprints: tuple[str, ...] = ()


@dataclass(frozen=True)
class AcceptedList:
    verified: VerifiedContent
    image_list: ImageList
    signer: Signer | None

    @property
    def unsigned(self) -> bool:
        return self.verified.kind == "none"

    # What every source shows in reports (imagesync.sources.base.Accepted).
    @property
    def identifier(self) -> str:
        return self.image_list.identifier

    @property
    def created(self) -> datetime:
        return self.image_list.created

    @property
    def expires(self) -> datetime:
        return self.image_list.expires

    @property
    def image_count(self) -> int:
        return len(self.image_list.images)


class Verifier:
    """Checks signatures for one run; the CA directory is loaded once, on first use."""

    def __init__(self, *, ca_dir: Path, crl: CrlMode, gpg_home: Path, allow_sha1: bool = False) -> None:
        self._ca_dir = ca_dir
        self._crl: CrlMode = crl
        self._gpg_home = gpg_home
        self._allow_sha1 = allow_sha1
        self._store: CAStore | None = None

    def store(self) -> CAStore:
        """The loaded CA directory. Raises ConfigError."""
        if self._store is None:
            self._store = CAStore.load(self._ca_dir, self._crl)
        return self._store

    def signature(self, raw: bytes, expect: Expectation, *, now: datetime,
                  detached: bytes | None = None) -> VerifiedContent:
        """Check ``raw`` as ``expect.signature`` says. Raises SignatureError subclasses or ConfigError."""
        if expect.signature == "none":
            return VerifiedContent(content=raw, kind="none", signer=None)
        if expect.signature == "gpg":
            return gpg.verify(raw, home=self._gpg_home, fingerprints=expect.gpg_fingerprints, signature=detached)
        return smime.verify(raw, self.store(), now=now, allow_sha1=self._allow_sha1)


def accept(raw: bytes, expect: Expectation, verifier: Verifier, *, source: str, now: datetime,
           previous_created: datetime | None = None, detached: bytes | None = None,
           fresh: bool = True) -> AcceptedList:
    """Verify, parse and check one list. Every ImagesyncError raised names ``source``.

    With ``fresh=False`` expiry and rollback are left to the caller (see :func:`hepix.check_freshness`).
    """
    try:
        verified = verifier.signature(raw, expect, now=now, detached=detached)
        image_list = hepix.parse(verified.content, source=source)
        signer = check_endorser(verified, expect.endorser, image_list) if verified.kind == "smime" else verified.signer
        if fresh:
            hepix.check_freshness(image_list, now=now, previous_created=previous_created, source=source)
    except ImagesyncError as exc:
        raise exc.about(source) from None
    return AcceptedList(verified=verified, image_list=image_list, signer=signer)


def check_endorser(verified: VerifiedContent, configured: Endorser | None, image_list: ImageList) -> Signer:
    """Return the signer that is both the list's own ``hv:endorser`` and the configured endorser.

    Raises EndorserMismatchError.
    """
    signers = verified.signers or ((verified.signer,) if verified.signer else ())
    own = [s for s in signers if _same(s, image_list.endorser_dn, image_list.endorser_ca)]
    if not own:
        first = signers[0] if signers else None
        raise EndorserMismatchError(
            f"signed by {first.dn if first else 'nobody'} (CA {first.ca if first else '-'}) but the list names "
            f"endorser {image_list.endorser_dn} (CA {image_list.endorser_ca})", signer=first)
    if configured is None:
        return own[0]
    chosen = next((s for s in own if _same(s, configured.dn, configured.ca)), None)
    if chosen is None:
        raise EndorserMismatchError(
            f"signed by {own[0].dn} (CA {own[0].ca}), not by the configured endorser {configured.dn} "
            f"(CA {configured.ca})", signer=own[0])
    return chosen


def _same(signer: Signer, subject: str, issuer: str) -> bool:
    try:
        return dn.matches(signer.dn, subject) and dn.matches(signer.ca, issuer)
    except dn.DNError:
        return False
