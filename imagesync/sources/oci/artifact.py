"""What an OCI artifact becomes: one disk-image layer -> an :class:`~imagesync.model.Image`. Pure.

Identity is ``<host>/<repository>:<tag>`` and the version is the manifest digest, so a re-pushed floating tag is a
new version. The bytes are the single layer, addressed by its sha256. The annotations (the manifest's and the
layer's; EGI writes its own on the layer) become the fields and properties the EGI federation's sync writes, so
its consumers keep working: ``vmcatcher_event_ad_mpuri`` is ``<host>/<repository>:<tag>-<digest>`` (accounting
and cloud-info-provider), ``APPLIANCE_ATTRIBUTES`` carries every annotation plus ``eu.egi.cloud.image_ref``
(cloud-info-api), and the ``org.openstack.glance.*`` annotations become the Glance fields of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping

from imagesync.errors import ImagesyncError
from imagesync.model import Image
from imagesync.sources.oci.content import ContentError, Descriptor, Manifest

GLANCE = "org.openstack.glance."
IMAGE_REF = "eu.egi.cloud.image_ref"
# Layer media types that are a disk image whatever their annotations say; the bytes tell its format.
DISK_MEDIA_TYPES = frozenset({"application/x-qemu-disk", "application/vnd.qemu.disk", "application/octet-stream"})
DISK_FORMATS = frozenset({"qcow2", "raw", "vmdk", "vdi", "vhd", "vhdx", "iso", "ova", "ploop"})
_MANIFEST_TYPES = frozenset({"application/vnd.oci.image.manifest.v1+json",
                             "application/vnd.docker.distribution.manifest.v2+json"})


class Refused(ImagesyncError):
    """This artifact cannot be synced (not a single disk layer, no format, lacks the required annotation)."""


def image_of(host: str, repository: str, tag: str, manifest: Manifest, *,
             required_annotation: str | None = None) -> Image:
    """The image an artifact is. Raises Refused with one line saying why it is not one."""
    layer = _disk_layer(manifest)
    annotations = {**_annotations(manifest.data), **layer.annotations}
    if required_annotation and not annotations.get(required_annotation):
        raise Refused(f"no {required_annotation} annotation", hint="the publisher marks the artifacts to sync so")
    disk_format = _disk_format(layer, annotations)
    glance = {key.removeprefix(GLANCE): value for key, value in annotations.items() if key.startswith(GLANCE)}
    reference = f"{repository}:{tag}"
    return Image(
        identifier=f"{host}/{reference}", uri=f"https://{host}/v2/{repository}/blobs/{layer.digest}",
        sha512="", sha256=layer.digest.removeprefix("sha256:"), size=layer.size, version=manifest.digest,
        title=annotations.get("eu.egi.cloud.image.title") or reference,
        description=annotations.get("eu.egi.cloud.description") or annotations.get(
            "org.opencontainers.image.description"),
        arch=glance.get("architecture"), os_name=glance.get("os_distro"), os_version=glance.get("os_version"),
        format=disk_format, vo=None, ram_minimum=_integer(glance.get("min_ram")),
        core_minimum=None, mpuri=f"{host}/{reference}-{manifest.digest}", expires=None,
        attributes={**annotations, IMAGE_REF: reference})


def _disk_layer(manifest: Manifest) -> Descriptor:
    if manifest.is_index:
        raise Refused("an index (several platforms), not a single disk image",
                      hint="push the disk image as a single-layer artifact")
    if manifest.media_type not in _MANIFEST_TYPES:
        raise Refused(f"manifest media type {manifest.media_type!r} is not an image manifest")
    try:
        layers = manifest.descriptors("layers")
    except ContentError as exc:
        raise Refused(f"malformed manifest: {exc}") from exc
    if len(layers) != 1:
        raise Refused(f"{len(layers)} layers, not one disk image", hint="push the disk image as a single layer")
    if not layers[0].digest.startswith("sha256:"):
        raise Refused(f"layer digest {layers[0].digest[:20]}... is not sha256")
    return layers[0]


def _disk_format(layer: Descriptor, annotations: Mapping[str, str]) -> str | None:
    declared = (annotations.get(GLANCE + "disk_format") or "").strip().lower()
    if declared and declared not in DISK_FORMATS:
        raise Refused(f"unknown disk format {declared[:40]!r} in {GLANCE}disk_format")
    if declared:
        return declared
    if layer.media_type in DISK_MEDIA_TYPES:
        return None  # a disk image of a format the bytes will tell (qemu-img)
    raise Refused(f"layer media type {layer.media_type[:80]!r} is no disk image and no disk_format is annotated",
                  hint=f"annotate {GLANCE}disk_format, or use application/x-qemu-disk")


def _annotations(data: Mapping[str, object]) -> dict[str, str]:
    found = data.get("annotations")
    if not isinstance(found, Mapping):
        return {}
    return {str(k): str(v) for k, v in found.items() if isinstance(v, str)}


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
