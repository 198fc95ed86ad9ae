"""What the sync tests share: the demo images of two VOs, a run's actions as (kind, image, status), and a demo
world syncing into the dev cloud through a config a test can change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, DemoWorld, demo_images
from imagesync.run.pipeline import SyncResult
from tests.devcloud.fixture import DevCloud


@dataclass
class CloudEnv:
    """The demo world, the dev cloud, this test's tag, and the config (at ``config_path``) of target ``cloud``."""

    world: DemoWorld
    cloud: DevCloud
    tag: str
    config_path: Path

    def settings(self, **target: object) -> config.Settings:
        """The config with ``target``'s keys set on target ``cloud``, written back so later calls keep them."""
        data = yaml.safe_load(self.config_path.read_text())
        data["targets"]["cloud"].update(target)
        self.config_path.write_text(yaml.safe_dump(data))
        return config.load(self.config_path)


def images_v1() -> list[DemoImage]:
    """The demo's two images at version 1.0, the second of them for another VO (beta.vo)."""
    alpine, debian = demo_images("1.0")
    return [alpine, DemoImage(debian.identifier, debian.version, debian.title, debian.data, vo="beta.vo")]


def kinds(result: SyncResult) -> list[tuple[str, str, str]]:
    """(action kind, image identifier, status) of each result, in the plan's order."""
    return [(r.action.kind, r.action.identifier, r.status) for r in result.results]
