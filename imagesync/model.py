"""Frozen values that flow between the stages. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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
