"""What the sync tests share: the demo images of two VOs, and a run's actions as (kind, image, status)."""

from __future__ import annotations

from imagesync.demo.world import DemoImage, demo_images
from imagesync.run.pipeline import SyncResult


def images_v1() -> list[DemoImage]:
    """The demo's two images at version 1.0, the second of them for another VO (beta.vo)."""
    alpine, debian = demo_images("1.0")
    return [alpine, DemoImage(debian.identifier, debian.version, debian.title, debian.data, vo="beta.vo")]


def kinds(result: SyncResult) -> list[tuple[str, str, str]]:
    """(action kind, image identifier, status) of each result, in the plan's order."""
    return [(r.action.kind, r.action.identifier, r.status) for r in result.results]
