"""The no-op rerun into a real Glance (the dev cloud): how often it lists, and that hidden images are still found.

Glance's own answers are counted by GlanceProxy, a real HTTP proxy between imagesync and the dev cloud's Glance:
nothing is mocked, every request it records is one Glance really served.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from keystoneauth1.adapter import Adapter

from imagesync.config import settings as config
from imagesync.demo.world import build, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import SyncResult, sync
from imagesync.state.store import StateStore
from imagesync.targets.glance.inventory import list_images
from tests.devcloud.fixture import DevCloud
from tests.support.glance_proxy import GlanceProxy
from tests.support.imports import imported_by

LISTING = "/v2/images?"
T = TypeVar("T")


@dataclass
class Cloud:
    """A demo world syncing into the dev cloud's Glance through a counting proxy, with a tag of its own."""

    glance: Any
    proxy: GlanceProxy
    tag: str
    config_path: Path
    publish: Any

    def settings(self) -> config.Settings:
        return config.load(self.config_path)

    def listings(self, result_of: Callable[[], T]) -> tuple[T, list[dict[str, list[str]]]]:
        """Run ``result_of()`` and return its result with the query of every image listing Glance answered."""
        before = len(self.proxy.requests)
        result = result_of()
        seen = [s for s in self.proxy.requests[before:] if s.method == "GET" and s.path.startswith(LISTING)]
        assert all(s.status == 200 for s in seen), seen
        return result, [parse_qs(urlsplit(s.path).query) for s in seen]

    def images(self) -> dict[str, Any]:
        """Every image of this test's tag, hidden ones included, by identifier and version (asked directly)."""
        found = {i["id"]: i for hidden in ({}, {"os_hidden": True})
                 for i in self.glance.images.list(filters={"tag": [self.tag], **hidden})}
        return {f"{i['imagesync_image_id']} {i['imagesync_version']}": i for i in found.values()}


def _cloud(devcloud: DevCloud, tmp_path: Path, mode: str) -> Iterator[Cloud]:
    secret = tmp_path / "password"
    secret.write_text(devcloud.user.password)
    secret.chmod(0o600)
    tag = f"imagesync-noop-{uuid.uuid4().hex[:8]}"
    glance = devcloud.glance()
    with GlanceProxy(devcloud.glance_url) as proxy, build(tmp_path) as world:
        target = {"driver": "glance", "region": devcloud.region, "visibility": "private", "tag": tag,
                  "endpoint": proxy.url, "retire": {"mode": mode, "delete_after": "365d"},
                  "auth": devcloud.password_auth(password_file=secret)}
        cloud = Cloud(glance, proxy, tag, world.write_config({"targets": {"cloud": target}}), world.publish)
        try:
            yield cloud
        finally:
            for image in cloud.images().values():
                glance.images.delete(image["id"])


@pytest.fixture
def deactivating(devcloud: DevCloud, tmp_path: Path) -> Iterator[Cloud]:
    yield from _cloud(devcloud, tmp_path, "deactivate")


@pytest.fixture
def hiding(devcloud: DevCloud, tmp_path: Path) -> Iterator[Cloud]:
    yield from _cloud(devcloud, tmp_path, "hide")


def _synced(cloud: Cloud) -> SyncResult:
    result = sync(cloud.settings(), dry_run=False)
    assert result.exit_code == EXIT_OK, [(r.action.identifier, r.error) for r in result.results if r.error]
    return result


def _kinds(result: SyncResult) -> list[tuple[str, str]]:
    return sorted((r.action.kind, r.action.identifier) for r in result.results)


def _states(cloud: Cloud, identifier: str) -> list[str]:
    with StateStore.open(cloud.settings().state_dir) as store:
        return [r.state.value for r in store.target_images(target="cloud") if r.identifier == identifier]


def _hidden(listings: list[dict[str, list[str]]]) -> list[bool]:
    """Per listing, whether it asked for hidden images (Glance reads the value case-insensitively)."""
    return [query.get("os_hidden", ["false"])[0].lower() == "true" for query in listings]


def _big_pages(listings: list[dict[str, list[str]]]) -> bool:
    # Glance caps a page at its api_limit_max (default 1000): asking for fewer only means more pages.
    return all(int(query["limit"][0]) >= 1000 for query in listings)


def test_a_no_op_rerun_lists_glance_once(deactivating: Cloud) -> None:
    cloud = deactivating
    cloud.publish(demo_images("1.0"))
    _synced(cloud)
    result, listings = cloud.listings(lambda: _synced(cloud))
    assert _kinds(result) == [("keep", "demo-alpine"), ("keep", "demo-debian")]
    assert len(listings) == 1, listings
    assert _hidden(listings) == [False] and _big_pages(listings), listings


def test_a_fresh_state_still_lists_hidden_images(hiding: Cloud) -> None:
    cloud = hiding
    cloud.publish(demo_images("1.0"))
    _synced(cloud)
    cloud.publish(demo_images("1.0")[:1])
    _synced(cloud)  # demo-debian retired: hidden
    (cloud.settings().state_dir / "state.db").unlink()
    _, listings = cloud.listings(lambda: sync(cloud.settings(), dry_run=True))
    assert _hidden(listings) == [False, True] and _big_pages(listings), listings


def test_a_hidden_image_is_still_found_and_kept_retired(hiding: Cloud) -> None:
    cloud = hiding
    alpine, debian = demo_images("1.0")
    cloud.publish([alpine, debian])
    _synced(cloud)
    cloud.publish([alpine])
    assert ("retire", "demo-debian") in _kinds(_synced(cloud))
    hidden_id = cloud.images()["demo-debian 1.0"]["id"]
    result, listings = cloud.listings(lambda: _synced(cloud))
    assert _kinds(result) == [("keep", "demo-alpine")]
    # The state remembers demo-debian, which the plain listing no longer shows: only the hidden listing can tell
    # whether it is hidden or gone.
    assert _hidden(listings) == [False, True] and _big_pages(listings), listings
    assert _states(cloud, "demo-debian") == ["retired"]
    cloud.publish([alpine, debian])
    result = _synced(cloud)
    assert ("update-metadata", "demo-debian") in _kinds(result), _kinds(result)
    held = cloud.images()
    assert sorted(held) == ["demo-alpine 1.0", "demo-debian 1.0"]  # brought back, not uploaded again
    assert held["demo-debian 1.0"]["id"] == hidden_id and not held["demo-debian 1.0"]["os_hidden"]


def test_a_no_op_rerun_does_not_import_glanceclient(deactivating: Cloud, tmp_path: Path) -> None:
    cloud = deactivating
    cloud.publish(demo_images("1.0"))
    _synced(cloud)
    run = imported_by("--config", str(cloud.config_path), "sync", report=tmp_path / "modules.json")
    assert run.returncode == EXIT_OK, run.stdout + run.stderr
    assert "done: 0 add, 0 update, 0 update-metadata, 0 retire, 2 keep, 0 failed" in run.stdout, run.stdout
    assert "keystoneauth1" in run.packages()  # it did ask Glance what it holds
    assert "glanceclient" not in run.packages()


def test_the_listing_follows_glances_pages(deactivating: Cloud, devcloud: DevCloud) -> None:
    cloud = deactivating
    cloud.publish(demo_images("1.0"))
    _synced(cloud)
    # Pages of one image (Glance serves min(limit, api_limit_max)), so the two images take three answers, the last
    # one empty and without a next link.
    images = Adapter(devcloud.session(), service_type="image", region_name=devcloud.region, interface="public",
                     endpoint_override=cloud.proxy.url)
    found, listings = cloud.listings(lambda: list_images(images, {"tag": cloud.tag}, page_size=1))
    assert set(found) == {str(i["id"]) for i in cloud.images().values()}
    assert [query["limit"] for query in listings] == [["1"]] * 3 and "marker" in listings[2], listings
