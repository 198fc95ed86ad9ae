"""A directory target: ``<path>/<list>/<identifier>-<version>.<fmt>`` plus a ``.json`` sidecar, written atomically.

The sidecar is written last and is what the inventory reads, so a crash between the two writes leaves an image
file without sidecar, which the next add simply overwrites. Retired images move to ``<path>/retired/`` (modes
deactivate and hide) or are deleted (mode delete).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Collection
from pathlib import Path

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Held, Placement, RetireMode
from imagesync.targets import properties
from imagesync.targets.base import Capabilities, TargetError, Upload
from imagesync.util import atomic

log = logging.getLogger(__name__)
RETIRED = "retired"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DirectoryDriver:
    capabilities = Capabilities(formats=("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", "iso"),
                                retire_modes=("deactivate", "hide", "delete"))

    def __init__(self, settings: TargetSettings) -> None:
        if settings.path is None:
            raise TargetError("no path configured", subject=f"target {settings.name}")
        self.name = settings.name
        self.root = settings.path
        self.tag = settings.tag
        self.formats = settings.disk_formats or self.capabilities.formats

    def inventory(self, *, known: Collection[str] | None = None) -> list[Held]:
        """Every sidecar under ``path`` (retired ones inactive); ``known`` would spare nothing here. Raises
        TargetError when neither ``path`` nor its parent exists."""
        if not self.root.is_dir():
            if self.root.parent.is_dir():
                return []
            raise TargetError(f"directory {self.root} does not exist and cannot be created here",
                              subject=f"target {self.name}")
        held = [self._held(p, active=True) for p in sorted(self.root.glob("*/*.json"))
                if p.relative_to(self.root).parts[0] != RETIRED]
        held += [self._held(p, active=False) for p in sorted((self.root / RETIRED).glob("*/*.json"))]
        return [h for h in held if h is not None]

    def placement(self, desired: DesiredImage, disk_format: str | None) -> Placement:
        """The path (under ``path``) ``desired`` is written to; ``*`` stands for a format only the bytes tell."""
        return Placement(name=_relative(desired, disk_format or "*"), vo=properties.vo_of(desired))

    def add(self, upload: Upload) -> str:
        desired = upload.desired
        relative = _relative(desired, upload.disk_format)
        destination = self.root / relative
        props = properties.properties(desired, tag=self.tag, disk_format=upload.disk_format,
                                      virtual_size=upload.virtual_size)
        try:
            atomic.copy_file(upload.local_path(), destination, upload.meter.update)
            self._write_sidecar(destination, properties.image_name(desired), props, upload.size, upload.virtual_size)
        except OSError as exc:
            raise TargetError(f"cannot write {destination}: {exc.strerror}", subject=f"target {self.name}") from None
        return relative

    def update_metadata(self, target_id: str, desired: DesiredImage, *, reactivate: bool) -> None:
        path = self._locate(target_id)
        if reactivate and path != self.root / target_id:
            self._move(path, self.root / target_id)
            path = self.root / target_id
        sidecar = self._read(path.with_name(path.name + ".json"))
        old = sidecar.get("properties")
        fmt = str(old.get("disk_format", "")) if isinstance(old, dict) else ""
        virtual = int(str(sidecar.get("virtual_size", 0)))
        props = properties.properties(desired, tag=self.tag, disk_format=fmt, virtual_size=virtual)
        try:
            self._write_sidecar(path, properties.image_name(desired), props, int(str(sidecar.get("size", 0))), virtual)
        except OSError as exc:
            raise TargetError(f"cannot update {target_id}: {exc.strerror}", subject=f"target {self.name}") from None

    def retire(self, target_id: str, mode: RetireMode) -> None:
        path = self._locate(target_id)
        sidecar = path.with_name(path.name + ".json")
        try:
            if mode == "delete":
                sidecar.unlink()
                path.unlink(missing_ok=True)
            elif path == self.root / target_id:
                self._move(path, self.root / RETIRED / target_id)
        except OSError as exc:
            raise TargetError(f"cannot retire {target_id}: {exc.strerror}", subject=f"target {self.name}") from None

    def cleanup(self) -> list[str]:
        """Temp files of an atomic write that a killed run left behind. Other files are not ours to touch: an
        image file without sidecar (killed between the two writes) is simply overwritten by the next add."""
        if not self.root.is_dir():
            return []
        leftovers = [p for p in self.root.rglob(".*.tmp") if p.is_file()]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return [str(p.relative_to(self.root)) for p in leftovers]

    def close(self) -> None:
        return None

    def _write_sidecar(self, image_path: Path, name: str, props: dict[str, str], size: int, virtual_size: int) -> None:
        data = {"name": name, "file": image_path.name, "size": size, "virtual_size": virtual_size, "properties": props}
        atomic.write_bytes(image_path.with_name(image_path.name + ".json"),
                           (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    def _held(self, sidecar: Path, *, active: bool) -> Held | None:
        data = self._read(sidecar)
        props = data.get("properties")
        if not isinstance(props, dict) or props.get("imagesync_tag") != self.tag:
            return None
        image_path = sidecar.with_suffix("")
        if not image_path.is_file():
            return None
        base = self.root / RETIRED if not active else self.root
        size = data.get("size")
        return Held(target_id=str(image_path.relative_to(base)), list_name=props.get("imagesync_list"),
                    identifier=props.get("imagesync_image_id"), version=props.get("imagesync_version"),
                    sha512=props.get("imagesync_sha512"), active=active, digest=props.get("imagesync_digest"),
                    name=str(image_path.relative_to(self.root)), vo=props.get("ad_vo"),
                    disk_format=props.get("disk_format"), size=size if isinstance(size, int) else None)

    def _locate(self, target_id: str) -> Path:
        for base in (self.root, self.root / RETIRED):
            if (base / (target_id + ".json")).exists():
                return base / target_id
        raise TargetError(f"{target_id} is not in {self.root}", subject=f"target {self.name}")

    def _move(self, source: Path, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Sidecar last out, first in: the inventory never sees a sidecar without its image.
        os.replace(source.with_name(source.name + ".json"), destination.with_name(destination.name + ".json"))
        os.replace(source, destination)
        atomic.fsync_dir(destination.parent)

    def _read(self, sidecar: Path) -> dict[str, object]:
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("target=%s ignoring unreadable sidecar %s: %s", self.name, sidecar, exc)
            return {}
        return data if isinstance(data, dict) else {}


def _relative(desired: DesiredImage, disk_format: str) -> str:
    image = desired.image
    return f"{_safe(desired.list_name)}/{_safe(image.identifier)}-{_safe(image.version)}.{disk_format}"


def _safe(value: str) -> str:
    # Identifiers and versions come from the (verified) list, but never let them name a path outside the root.
    return _SAFE.sub("_", value).strip(".") or "_"

