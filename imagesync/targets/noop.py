"""A target that holds nothing and logs every action it receives: for trying a configuration safely."""

from __future__ import annotations

import logging
from collections.abc import Collection

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Held, RetireMode
from imagesync.targets.base import Capabilities, Upload

log = logging.getLogger(__name__)


class NoopDriver:
    capabilities = Capabilities(formats=(), retire_modes=("deactivate", "hide", "delete"))

    def __init__(self, settings: TargetSettings) -> None:
        self.name = settings.name

    def inventory(self, *, known: Collection[str] | None = None) -> list[Held]:
        """Nothing: a noop target never holds an image."""
        return []

    def add(self, upload: Upload) -> str:
        image = upload.desired.image
        log.info("target=%s noop: would add %s/%s version=%s format=%s bytes=%d", self.name,
                 upload.desired.list_name, image.identifier, image.version, upload.disk_format, upload.size)
        return f"noop:{upload.desired.list_name}/{image.identifier}/{image.version}"

    def update_metadata(self, target_id: str, desired: DesiredImage, *, reactivate: bool) -> None:
        log.info("target=%s noop: would update metadata of %s (reactivate=%s)", self.name, target_id, reactivate)

    def retire(self, target_id: str, mode: RetireMode) -> None:
        log.info("target=%s noop: would retire %s (mode=%s)", self.name, target_id, mode)

    def cleanup(self) -> list[str]:
        return []

    def close(self) -> None:
        return None
