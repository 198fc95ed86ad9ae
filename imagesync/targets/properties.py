"""What imagesync writes about an image into a target (DESIGN §6), shared by every driver. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from imagesync.model import DesiredImage

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


def image_name(desired: DesiredImage) -> str:
    """``<prefix><dc:title> <hv:version>`` (the identifier stands in for a missing title; a version that is a
    manifest digest is shortened as registries show it)."""
    image = desired.image
    version = image.version[:19] if image.version.startswith("sha256:") else image.version
    return f"{desired.prefix}{image.title or image.identifier} {version}"


def vo_of(desired: DesiredImage) -> str | None:
    return desired.vo or desired.image.vo


def digest(desired: DesiredImage) -> str:
    """A fingerprint of everything that ends up in the metadata: a change means update-metadata."""
    material = {"attributes": desired.image.attributes, "prefix": desired.prefix, "vo": vo_of(desired),
                "list_id": desired.list_identifier}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def properties(desired: DesiredImage, *, tag: str, disk_format: str, virtual_size: int) -> dict[str, str]:
    """The flat string properties of DESIGN §6 (ownership, compatibility, scheduling)."""
    image = desired.image
    props = {
        "imagesync_tag": tag,
        "imagesync_list": desired.list_name,
        "imagesync_list_id": desired.list_identifier,
        "imagesync_image_id": image.identifier,
        "imagesync_version": image.version,
        "imagesync_sha512": image.sha512,
        "imagesync_digest": digest(desired),
        "vmcatcher_event_ad_mpuri": image.mpuri or "",
        "vmcatcher_event_dc_title": image.title or "",
        "vmcatcher_event_dc_description": image.description or "",
        "APPLIANCE_ATTRIBUTES": json.dumps(dict(image.attributes), sort_keys=True, default=str),
        "ad_vo": vo_of(desired) or "",
        "os_distro": (image.os_name or "").lower(),
        "os_version": image.os_version or "",
        "architecture": image.arch or "",
        "min_ram": str(image.ram_minimum or 0),
        "min_disk": str(-(-virtual_size // _GIB)),
        "disk_format": disk_format,
        "container_format": "bare",
    }
    props.update(_glance_fields(image.attributes))
    # Identity and compatibility keys are always written (consumers look them up); an empty scheduling hint
    # would be worse than none (Nova validates architecture names).
    return {key: value for key, value in props.items() if value != "" or key not in _SCHEDULING}


_SCHEDULING = frozenset({"os_distro", "os_version", "architecture"})
# Annotations of OCI artifacts (org.openstack.glance.<field>) that are Glance fields of the same name; the
# others of the list (os_distro, os_version, architecture, disk and container format) come from the image itself.
_GLANCE_FIELDS = ("os_type", "os_admin_user")


def _glance_fields(attributes: Mapping[str, object]) -> dict[str, str]:
    found = {key: attributes.get(f"org.openstack.glance.{key}") for key in _GLANCE_FIELDS}
    return {key: value for key, value in found.items() if isinstance(value, str) and value}
