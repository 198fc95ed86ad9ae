"""Frozen values that flow between the stages. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

SignatureKind = Literal["smime", "gpg", "none"]


@dataclass(frozen=True)
class Signer:
    """Who signed a list. For S/MIME, ``dn``/``ca`` are OpenSSL one-line DNs; for GPG, ``dn`` is the key's
    user id and ``ca`` is empty; ``fingerprint`` is the certificate's SHA-256 or the GPG primary key."""

    dn: str
    ca: str
    fingerprint: str


@dataclass(frozen=True)
class VerifiedContent:
    """Bytes whose signature was checked (or, for ``kind == "none"``, explicitly accepted unsigned)."""

    content: bytes
    kind: SignatureKind
    signer: Signer | None
    # Every signer that verified (two-signer S/MIME messages); ``signer`` is the first of them.
    signers: tuple[Signer, ...] = ()


@dataclass(frozen=True)
class Image:
    """One ``hv:image`` of a list. ``attributes`` holds the whole original object, kept for consumers."""

    identifier: str
    uri: str
    sha512: str
    size: int
    version: str
    title: str | None
    description: str | None
    arch: str | None
    os_name: str | None
    os_version: str | None
    format: str | None
    vo: str | None
    ram_minimum: int | None
    core_minimum: int | None
    mpuri: str | None
    expires: datetime | None
    attributes: Mapping[str, object]
    # The layer digest of an OCI artifact (hex): the content address its bytes are checked against. A source that
    # publishes no sha512 leaves ``sha512`` empty until the bytes were seen once (the state remembers it then).
    sha256: str = ""

    @property
    def content_key(self) -> str:
        """The digest the bytes are checked against and cached under: the sha512 when known, else the sha256."""
        return self.sha512 or self.sha256


@dataclass(frozen=True)
class ImageList:
    """A parsed HEPiX ``hv:imagelist``."""

    identifier: str
    title: str | None
    created: datetime
    expires: datetime
    endorser_dn: str
    endorser_ca: str
    vo: str | None
    images: tuple[Image, ...]
    attributes: Mapping[str, object]


ActionKind = Literal["add", "update", "update-metadata", "retire", "keep"]
RetireMode = Literal["deactivate", "hide", "delete"]
ListState = Literal["ok", "unchanged", "failed"]


@dataclass(frozen=True)
class DesiredImage:
    """An image some verified list wants in the targets, with the per-list settings applied."""

    list_name: str
    list_identifier: str
    image: Image
    prefix: str = ""
    vo: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.list_name, self.image.identifier, self.image.version)


@dataclass(frozen=True)
class ListDesire:
    """What one subscribed list says this run. ``status == "failed"`` means unknown: nothing of it may retire."""

    name: str
    status: ListState
    expires: datetime | None = None
    images: tuple[DesiredImage, ...] = ()
    subset: tuple[str, ...] = ()
    on_expiry: Literal["retire", "keep"] = "retire"
    # Verified (signature, endorser) but past dc:date:expires: on_expiry decides what happens to its images.
    expired: bool = False
    # Identifiers whose wanted version is unknown this run (an artifact that could not be read or verified): what
    # the targets hold of them is kept as it is (invariant 1), and nothing new of them is uploaded.
    unknown: tuple[str, ...] = ()
    # What the source wants the plan to say (an artifact skipped, and why).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Held:
    """An image a target really holds that carries our tag (the target's own view, normalised by its driver)."""

    target_id: str
    list_name: str | None
    identifier: str | None
    version: str | None
    sha512: str | None
    active: bool = True
    digest: str | None = None
    # What the target shows of it, for reports (the driver fills in what it knows).
    name: str | None = None
    vo: str | None = None
    disk_format: str | None = None
    size: int | None = None
    # Held where the target would not put it now (a Glance image outside its VO's project after ownership changed
    # to per-project): never current, so the plan adds a copy in the right place and retires this one.
    misplaced: bool = False


@dataclass(frozen=True)
class Known:
    """What the state remembers of one target image (the memory of why)."""

    record_id: int
    list_name: str
    identifier: str
    version: str
    sha512: str
    state: str
    target_id: str | None
    retired_at: datetime | None = None


@dataclass(frozen=True)
class TargetPolicy:
    name: str
    keep_versions: int = 0
    retire_mode: RetireMode = "deactivate"
    delete_after: timedelta | None = None


@dataclass(frozen=True)
class Placement:
    """Where and as what an image lands in one target, as far as it is known before anything is downloaded."""

    name: str | None = None  # its name in the target (Glance image name, directory path)
    vo: str | None = None
    project: str | None = None  # the project that gets it (shared with, or owner), as the mapping names it
    format: str | None = None  # the disk format the target receives (None: only the bytes will tell)
    convert_from: str | None = None  # the list's hv:format when the target takes another one (conversion)
    size: int | None = None  # bytes, as listed (or as held)
    problem: str | None = None  # why it cannot go there at all (unmapped VO, unusable project)


@dataclass(frozen=True)
class Action:
    target: str
    list_name: str
    identifier: str
    version: str
    kind: ActionKind
    reason: str
    title: str | None = None
    desired: DesiredImage | None = None
    target_id: str | None = None
    retire_mode: RetireMode | None = None
    # Old versions an update retires once the new one is active (DESIGN invariant 3).
    supersedes: tuple[str, ...] = ()
    adopt: bool = False
    placement: Placement | None = None

    @property
    def blocked(self) -> str | None:
        """Why this action cannot succeed, known before any download: it is a planned failure, never tried."""
        if self.placement is None or self.kind in ("keep", "retire"):
            return None
        return self.placement.problem


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()

    def for_target(self, target: str) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.target == target)
