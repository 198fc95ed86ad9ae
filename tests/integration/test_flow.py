"""The pipelined executor (issue 9): images are pushed as soon as their own download is verified, each target's
uploads bounded by its lane, retirements after every push. Real HTTPS server, real downloads, real state."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from imagesync.config import settings as config
from imagesync.demo.server import Fault
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.images.download import Downloaded, Downloader, DownloadPolicy
from imagesync.model import Action, ActionKind, DesiredImage, Image
from imagesync.net import guard as netguard
from imagesync.run import flow
from imagesync.run.execute import ActionResult
from imagesync.run.pipeline import sync
from imagesync.run.pull import Deferred
from imagesync.sources.base import SourceOutcome

LOOPBACK = netguard.parse_networks(["127.0.0.0/8"])


def blob_path(cache: Path, data: bytes) -> Path:
    sha512 = hashlib.sha512(data).hexdigest()
    return cache / "images" / sha512[:2] / sha512


class AddedWhile:
    """A run observer noting, when each add is reported, whether another image's bytes were already verified."""

    def __init__(self, cache: Path, other: bytes) -> None:
        self.other = blob_path(cache, other)
        self.seen: dict[str, bool] = {}

    def lists_loaded(self, outcomes: list[SourceOutcome]) -> None:
        pass

    def action_done(self, result: ActionResult) -> None:
        self.seen[result.action.identifier] = self.other.exists()


def test_an_image_is_pushed_while_another_still_downloads(world: DemoWorld) -> None:
    alpine, debian = demo_images()
    world.publish([alpine, debian])
    world.server.inject(debian.path, Fault.stall(2.0))  # debian's bytes come two seconds late
    settings = config.load(world.write_config(
        {"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}}))
    observer = AddedWhile(settings.cache_dir, debian.data)
    result = sync(settings, dry_run=False, observer=observer)
    assert [r.status for r in result.results] == ["done", "done"], result
    # Before: every download finished before the first upload started, so debian was always there already.
    assert observer.seen == {"demo-alpine": False, "demo-debian": True}


# -- the flow itself, with a real downloader and steps that record what ran when -------------------------


def image(identifier: str, url: str, data: bytes) -> DesiredImage:
    found = Image(identifier=identifier, uri=url, sha512=hashlib.sha512(data).hexdigest(), size=len(data),
                  version="1", title=identifier, description=None, arch=None, os_name=None, os_version=None,
                  format=None, vo="demo.vo", ram_minimum=None, core_minimum=None, mpuri=None, expires=None,
                  attributes=MappingProxyType({}))
    return DesiredImage(list_name="demo", list_identifier="lid", image=found)


def action(kind: ActionKind, target: str, identifier: str, desired: DesiredImage | None = None) -> Action:
    return Action(target=target, list_name="demo", identifier=identifier, version="1", kind=kind, reason="test",
                  desired=desired)


class Recorder:
    """Steps for :func:`flow.run` that note their order and how many ran at once on each target."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.order: list[str] = []
        self.running: dict[str, int] = {}
        self.widest: dict[str, int] = {}

    def transfer(self, act: Action, fetched: flow.Fetched) -> str:
        with self.lock:
            self.running[act.target] = self.running.get(act.target, 0) + 1
            self.widest[act.target] = max(self.widest.get(act.target, 0), self.running[act.target])
        time.sleep(self.seconds)
        with self.lock:
            self.running[act.target] -= 1
            self.order.append(f"{act.kind} {act.target} {act.identifier}")
        return "ok" if isinstance(fetched, Downloaded) else f"failed: {fetched}"

    def other(self, act: Action) -> str:
        with self.lock:
            self.order.append(f"{act.kind} {act.target} {act.identifier}")
        return act.kind


@pytest.fixture
def downloader(world: DemoWorld, tmp_path: Path) -> Iterator[Downloader]:
    policy = DownloadPolicy(concurrency=2, retries=0, timeout=10.0, min_free_space=0, allowed_networks=LOOPBACK)
    fetcher = Downloader(tmp_path / "cache", policy, ca_dir=world.ca_dir)
    yield fetcher
    fetcher.close()


def served(world: DemoWorld, count: int) -> list[DesiredImage]:
    found = []
    for n in range(count):
        data = f"image {n} ".encode() * 1000
        world.server.put(f"/flow/{n}.img", data)
        found.append(image(f"img-{n}", world.server.url(f"/flow/{n}.img"), data))
    return found


def test_each_target_lane_is_as_wide_as_its_upload_concurrency(world: DemoWorld, downloader: Downloader) -> None:
    images = served(world, 6)
    actions = [action("add", target, d.image.identifier, d) for d in images for target in ("narrow", "wide")]
    steps = Recorder(seconds=0.2)
    results = flow.run(actions, downloader=downloader, lanes={"narrow": 1, "wide": 2}, transfer=steps.transfer,
                       other=steps.other)
    assert results == ["ok"] * len(actions)
    assert steps.widest == {"narrow": 1, "wide": 2}


def test_retirements_wait_for_every_push_and_results_keep_the_plan_order(world: DemoWorld,
                                                                         downloader: Downloader) -> None:
    new, failing = served(world, 2)
    world.server.remove("/flow/1.img")  # its download fails: the push is told so and fails alone
    actions = [action("retire", "t", "old"), action("add", "t", "img-0", new), action("keep", "t", "kept"),
               action("update", "t", "img-1", failing)]
    steps = Recorder(seconds=0.3)
    results = flow.run(actions, downloader=downloader, lanes={"t": 2}, transfer=steps.transfer, other=steps.other)
    assert results[0] == "retire" and results[1] == "ok" and results[2] == "keep"
    assert results[3].startswith("failed: ") and "not found" in results[3]
    # The keep ran while bytes moved; the retirement only once every add and update was over (invariant 3).
    assert steps.order[0] == "keep t kept" and steps.order[-1] == "retire t old"


def test_one_download_serves_every_target_that_wants_the_image(world: DemoWorld, downloader: Downloader) -> None:
    (only,) = served(world, 1)
    actions = [action("add", target, "img-0", only) for target in ("a", "b", "c")]
    steps = Recorder()
    results = flow.run(actions, downloader=downloader, lanes={"a": 1, "b": 1, "c": 1}, transfer=steps.transfer,
                       other=steps.other)
    assert results == ["ok", "ok", "ok"]
    assert world.server.hits("/flow/0.img") == 1


def test_an_image_every_target_pulls_is_downloaded_only_when_asked_and_once(world: DemoWorld,
                                                                          downloader: Downloader) -> None:
    pulled, fetched = served(world, 2)
    actions = [action("add", t, d.image.identifier, d) for d in (pulled, fetched) for t in ("a", "b")]
    seen: list[str] = []

    def transfer(act: Action, got: flow.Fetched) -> str:
        seen.append(f"{act.identifier} {type(got).__name__}")
        # Both targets of img-0 fall back (as after failed imports): they share one lazy download.
        return str(got.get().path) if isinstance(got, Deferred) else "ok"

    results = flow.run(actions, downloader=downloader, lanes={"a": 1, "b": 1}, transfer=transfer,
                       other=lambda act: "other", pulls=lambda act: act.identifier == "img-0")
    assert sorted(seen) == ["img-0 Deferred", "img-0 Deferred", "img-1 Downloaded", "img-1 Downloaded"]
    assert results[0] == results[1] and Path(results[0]).is_file()
    assert world.server.hits("/flow/0.img") == world.server.hits("/flow/1.img") == 1


def test_an_image_only_some_targets_pull_is_downloaded_first(world: DemoWorld, downloader: Downloader) -> None:
    (only,) = served(world, 1)
    actions = [action("add", t, "img-0", only) for t in ("pulls", "direct")]
    results = flow.run(actions, downloader=downloader, lanes={"pulls": 1, "direct": 1},
                       transfer=lambda act, got: type(got).__name__, other=lambda act: "other",
                       pulls=lambda act: act.target == "pulls")
    assert results == ["Downloaded", "Downloaded"] and world.server.hits("/flow/0.img") == 1
