"""A list and a registry in one config and one run (issue 10's "done when"): a signed HEPiX list from the demo
world's HTTPS server and cosign-signed artifacts from the real registry, into one directory target."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import sync
from tests.support.oci_registry import Registries
from tests.support.oci_site import disk, new_site


def test_a_list_and_a_registry_sync_in_one_run(world: DemoWorld, tmp_path: Path, oci_registries: Registries,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    world.publish(demo_images("1.0"))
    (tmp_path / "site").mkdir()
    site = new_site(tmp_path / "site", oci_registries.get("htpasswd"))
    site.push("24.04", disk(b"from the registry"))
    assert site.server.login is not None
    # The registry's TLS CA is not a grid CA: operators add such a CA as they would for any HTTPS client.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(site.server.ca_file))
    registry = {"url": site.server.url, "repositories": [site.repository], "signature": "cosign",
                "cosign_keys": [str(site.key_file)], "username": site.server.login.username,
                "password": site.server.login.password, "vo": "demo.vo"}
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(tmp_path / "archive")}},
                               "registries": {"egi": registry}})
    result = sync(config.load(path), dry_run=False)
    assert result.exit_code == EXIT_OK, [o.error for o in result.lists] + [r.error for r in result.results]
    assert sorted((o.settings.name, o.kind, o.status) for o in result.lists) == [("demo", "hepix", "ok"),
                                                                                ("egi", "oci", "ok")]
    added = sorted(r.action.list_name for r in result.results if r.action.kind == "add" and r.status == "done")
    assert added == ["demo"] * len(demo_images("1.0")) + ["egi"]
    again = sync(config.load(path), dry_run=False)
    assert again.exit_code == EXIT_OK and again.bytes_downloaded == 0
    assert {r.action.kind for r in again.results} == {"keep"}
