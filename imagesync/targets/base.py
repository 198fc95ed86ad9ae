"""The one interface every target driver implements, and how drivers are found (entry points)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from imagesync.config.settings import TargetSettings
from imagesync.errors import ConfigError, ImagesyncError
from imagesync.model import DesiredImage, Held, RetireMode
from imagesync.util.meters import SILENT, Meter

GROUP = "imagesync.drivers"


class TargetError(ImagesyncError):
    """A target refused or failed an operation; the subject names the target (and image)."""


@dataclass(frozen=True)
class Capabilities:
    """What a target can do; the pipeline adapts (e.g. converts to ``formats[0]``) instead of failing late."""

    formats: tuple[str, ...]
    retire_modes: tuple[RetireMode, ...]
    visibility: bool = False
    sharing: bool = False


@dataclass(frozen=True)
class Upload:
    """Verified, possibly converted bytes ready for a target; or, with no ``path``, an image the target pulls
    from its URL itself (a driver whose ``pulls`` said so), whose bytes ``local`` downloads if it must fall back."""

    desired: DesiredImage
    path: Path | None
    disk_format: str
    virtual_size: int
    size: int
    # sha512 of the bytes at ``path`` (the list's, unless converted): what the target must confirm it received.
    sha512: str
    # Told of every block the driver reads from ``path`` (a progress bar on a terminal); reset when it starts over.
    meter: Meter = SILENT
    # For a remote upload (no ``path``): downloads, verifies and prepares the bytes; once per image, however many
    # targets fall back.
    fetch: Callable[[], Upload] | None = None

    def local(self) -> Upload:
        """This upload with its bytes on this host (itself if they already are). Raises ImagesyncError (the
        download or conversion failed)."""
        if self.path is not None:
            return self
        if self.fetch is None:
            raise TargetError("a remote upload without a way to download its bytes (a bug)",
                              subject=self.desired.image.identifier)
        return replace(self.fetch(), meter=self.meter)

    def local_path(self) -> Path:
        """Where the bytes are on this host (downloaded first if remote). Raises ImagesyncError, as ``local``."""
        path = self.local().path
        assert path is not None  # a fetch gives a local upload
        return path


class Driver(Protocol):
    name: str
    capabilities: Capabilities

    def inventory(self, *, known: Collection[str] | None = None) -> list[Held]:
        """Everything the target holds that carries our tag. ``known`` is the ids of the images the state
        remembers in this target (None: no state at hand); a driver may use it to spare itself work, never to
        leave out an image of ``known`` that it holds. Raises TargetError (target unreachable)."""
        ...

    def add(self, upload: Upload) -> str:
        """Store the image, set its properties and sharing; return its id in the target. Raises TargetError."""
        ...

    def update_metadata(self, target_id: str, desired: DesiredImage, *, reactivate: bool) -> None:
        """Rewrite the properties in place (and make it active again). Raises TargetError."""
        ...

    def retire(self, target_id: str, mode: RetireMode) -> None:
        """Deactivate, hide or delete. Raises TargetError."""
        ...

    def cleanup(self) -> list[str]:
        """Remove what an interrupted run left half-done in the target; return what was removed."""
        ...

    def close(self) -> None: ...

    # Optional (looked up with getattr; a driver without it never pulls):
    # def pulls(self, desired: DesiredImage, disk_format: str) -> bool:
    #     """True when the target fetches ``desired`` in ``disk_format`` from its URL itself, so the executor need
    #     not download it (its ``add`` then gets an Upload without ``path``). Asked before any download; raises
    #     nothing."""


class DriverFactory(Protocol):
    def __call__(self, settings: TargetSettings) -> Driver: ...


def available() -> tuple[str, ...]:
    """Names of the installed drivers."""
    return tuple(sorted(ep.name for ep in entry_points(group=GROUP)))


def load(settings: TargetSettings) -> Driver:
    """Instantiate the driver a target names. Raises ConfigError for an unknown driver, TargetError if it fails."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == settings.driver]
    if not found:
        raise ConfigError(f"targets.{settings.name}.driver: no driver {settings.driver!r} installed "
                          f"(available: {', '.join(available())})")
    factory: DriverFactory = found[0].load()
    return factory(settings)
