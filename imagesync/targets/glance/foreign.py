"""Images other tools uploaded into Glance, as ``imagesync adopt`` sees them. Pure.

cloudkeeper-os marks its images with ``APPLIANCE_*`` properties; atrope with a Glance tag (``[glance] tag`` of
atrope.conf: ``atrope`` by default, ``atrope-catchall`` in the EGI federation's sync) and ``appdb_id``. The EGI fork
of atrope also writes ``image_hash`` (``sha512:<hex>`` for list images, ``sha256:<layer hex>`` for registry
images), which :mod:`imagesync.run.adopt_match` compares with what the sources publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# atrope's default [glance] tag, and the one the EGI federation's sync (fedcloud-catchall-operations) configures.
ATROPE_TAGS = ("atrope", "atrope-catchall")


@dataclass(frozen=True)
class Foreign:
    """One image another tool uploaded. ``sha512`` is Glance's own hash of the stored bytes (None when Glance
    hashes with another algorithm); ``claimed`` is the tool's own ``<alg>:<hex>`` record of them, if any; ``vos``
    the VOs whose project holds it (ownership per-project; empty otherwise): their source images are preferred."""

    id: str
    identifier: str | None
    version: str | None
    sha512: str | None
    claimed: str | None = None
    vos: tuple[str, ...] = ()


def is_foreign(image: Mapping[str, Any], source: str, own_tag: str) -> bool:
    """Whether a listed image is one of ``source``'s that imagesync does not own yet (listings by tag already
    narrowed atrope's)."""
    if own_tag in image.get("tags", []):
        return False
    return source == "atrope" or "APPLIANCE_ID" in image


def foreign(image: Mapping[str, Any], source: str) -> Foreign:
    """The adoption view of one Glance image of ``source``. Raises KeyError for an image without an id."""
    # Glance's own hash of the stored bytes beats any property another tool wrote.
    own_hash = image.get("os_hash_value") if image.get("os_hash_algo") == "sha512" else None
    if source == "atrope":
        return Foreign(str(image["id"]), image.get("appdb_id"), None, own_hash, _claimed(image))
    return Foreign(str(image["id"]), image.get("APPLIANCE_ID"), image.get("APPLIANCE_VERSION"), own_hash)


def _claimed(image: Mapping[str, Any]) -> str | None:
    # atrope 1.x/2.x writes the list's sha512 as ``sha512``; the EGI fork writes ``image_hash`` as <alg>:<hex>.
    image_hash, sha512 = image.get("image_hash"), image.get("sha512")
    if isinstance(image_hash, str) and image_hash:
        return image_hash.lower()
    if isinstance(sha512, str) and sha512:
        return f"sha512:{sha512.lower()}"
    return None
