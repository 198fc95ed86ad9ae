"""Which source image, if any, a foreign Glance image is: the matching rules of ``imagesync adopt``. Pure.

- **List images** (cloudkeeper-os, atrope): the identifier names a listed image and the bytes' sha512 is the
  list's: Glance's own ``os_hash_value`` when it hashes with sha512, else what the tool recorded (atrope's
  ``sha512``, or the EGI fork's ``image_hash: sha512:<hex>``). cloudkeeper-os also records the version.
- **Registry images** (the EGI fork of atrope): the identifier is ``<registry>/<repository>:<tag>-<manifest
  digest>``. Taken over only while the registry still serves that digest under that tag (the source's image for
  ``<registry>/<repository>:<tag>`` has it as its version) and ``image_hash`` is that manifest's layer digest: then
  these are the bytes imagesync would upload. The sha512 Glance reports becomes the image's, since the registry
  publishes none and later plans compare it. A digest the registry no longer serves is left alone: the next sync
  uploads the new version, and retirement touches only images imagesync owns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from imagesync.model import DesiredImage
from imagesync.targets import properties
from imagesync.targets.glance.foreign import Foreign

_REGISTRY_ID = re.compile(r"(?P<reference>.+:[^/:]+)-(?P<digest>sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Match:
    """The source image a foreign one is (with the sha512 to record), or why it is none."""

    desired: DesiredImage | None
    reason: str


def by_identifier(images: Iterable[DesiredImage]) -> dict[str, list[DesiredImage]]:
    """The source images by identifier (the same image may come from several sources, e.g. one per VO)."""
    found: dict[str, list[DesiredImage]] = {}
    for desired in images:
        found.setdefault(desired.image.identifier, []).append(desired)
    return found


def match(image: Foreign, wanted: Mapping[str, Sequence[DesiredImage]]) -> Match:
    """The image of ``wanted`` (by identifier) that ``image`` is, by the rules above. Raises nothing."""
    found = _REGISTRY_ID.fullmatch(image.identifier or "")
    if found is not None and found["reference"] in wanted:
        return _registry(image, found["digest"], wanted[found["reference"]])
    return _listed(image, wanted.get(image.identifier or "", ()))


def _listed(image: Foreign, candidates: Sequence[DesiredImage]) -> Match:
    if not candidates:
        return _none("no listed image with this identifier")
    sha512 = image.sha512 or _hex(image.claimed, "sha512")
    for desired in _preferred(image, candidates):
        if sha512 and sha512 == desired.image.sha512 and image.version in (None, desired.image.version):
            return Match(desired, "identifier and sha512 match")
    versions = ", ".join(sorted({d.image.version for d in candidates}))
    return _none(f"listed (version {versions}) with another sha512 or version")


def _registry(image: Foreign, digest: str, candidates: Sequence[DesiredImage]) -> Match:
    served = [d for d in _preferred(image, candidates) if d.image.version == digest]
    if not served:
        now = ", ".join(sorted({d.image.version[:19] for d in candidates}))
        return _none(f"the registry serves {now} under this tag now, not {digest[:19]}: the next sync uploads it")
    desired = served[0]
    layer = f"sha256:{desired.image.sha256}"
    if image.claimed != layer:
        return _none(f"image_hash {str(image.claimed)[:19]} is not the layer digest {layer[:19]}")
    if image.sha512 and desired.image.sha512 and image.sha512 != desired.image.sha512:
        return _none("Glance's sha512 differs from that of the bytes the registry serves")
    known = replace(desired.image, sha512=desired.image.sha512 or image.sha512 or "")
    return Match(replace(desired, image=known), "the registry still serves this digest and layer")


def _preferred(image: Foreign, candidates: Sequence[DesiredImage]) -> list[DesiredImage]:
    # The same image listed for several VOs: the copy in a VO's own project (per-project) is that VO's.
    return sorted(candidates, key=lambda d: properties.vo_of(d) not in image.vos)


def _hex(claimed: str | None, algorithm: str) -> str | None:
    prefix = f"{algorithm}:"
    return claimed.removeprefix(prefix) if claimed and claimed.startswith(prefix) else None


def _none(why: str) -> Match:
    return Match(None, f"{why}: left alone")
