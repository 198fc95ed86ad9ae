"""Which images Glance may fetch itself, what the import call sends, and the target keys that choose it
(imagesync.targets.glance.importing): plain tables."""

from __future__ import annotations

import hashlib
import logging
from contextlib import nullcontext
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.config.settings import TargetSettings, UploadMethod
from imagesync.errors import ConfigError
from imagesync.model import DesiredImage, Image
from imagesync.targets.base import TargetError, Upload
from imagesync.targets.glance.importing import Importer, import_body, source_problem
from imagesync.targets.glance.inventory import PENDING, is_live, is_orphan

SHA = hashlib.sha512(b"bytes").hexdigest()


def upload(uri: str, *, sha512: str = SHA, size: int = 5, sha256: str = "") -> Upload:
    image = Image(identifier="i", uri=uri, sha512=SHA, size=5, version="1", title=None, description=None, arch=None,
                  os_name=None, os_version=None, format=None, vo=None, ram_minimum=None, core_minimum=None,
                  mpuri=None, expires=None, attributes=MappingProxyType({}), sha256=sha256)
    return Upload(desired=DesiredImage("l", "l-id", image), path=Path("/nowhere"), disk_format="raw",
                  virtual_size=size, size=size, sha512=sha512)


@pytest.mark.parametrize(("item", "problem"), [
    (upload("https://cdn.example.org/a.img"), None),
    (upload("http://cdn.example.org/a.img"), None),
    (upload("https://TOKEN:x-oauth-basic@lists.example.org/a.img"), "carries a token"),
    (upload("https://registry.example.org/v2/r/blobs/sha256:ab", sha256="ab" * 32), "OCI registry"),
    (upload("ftp://cdn.example.org/a.img"), "not http(s) (ftp)"),
    (upload("https://cdn.example.org/a.ova", sha512="0" * 128), "converted before upload"),
    (upload("https://cdn.example.org/a.img", size=6), "converted before upload"),
])
def test_glance_fetches_only_plain_urls_of_unconverted_bytes(item: Upload, problem: str | None) -> None:
    found = source_problem(item)
    assert found is None if problem is None else problem in str(found)


PULL = {"name": "web-download", "uri": "http://x/a"}


@pytest.mark.parametrize(("target", "body"), [
    ({}, {"method": PULL}),
    ({"stores": ("ceph", "file")}, {"method": PULL, "stores": ["ceph", "file"]}),
    ({"all_stores": True}, {"method": PULL, "all_stores": True}),
])
def test_the_import_call_names_the_stores(target: dict[str, Any], body: dict[str, Any]) -> None:
    assert import_body("web-download", "http://x/a", TargetSettings(name="t", driver="glance", **target)) == body


def test_glance_direct_sends_no_uri() -> None:
    assert import_body("glance-direct", None, TargetSettings(name="t", driver="glance")) == {
        "method": {"name": "glance-direct"}}


@pytest.mark.parametrize(("status", "pending", "live", "orphan"), [
    ("active", False, True, False),
    ("active", True, False, True),  # imported, not yet checked: a run killed there leaves it for cleanup
    ("importing", True, False, True),
    ("queued", False, False, True),
    ("deactivated", False, True, False),
])
def test_a_pending_image_is_never_live(status: str, pending: bool, live: bool, orphan: bool) -> None:
    image = {"status": status, **({PENDING: "web-download"} if pending else {})}
    assert (is_live(image), is_orphan(image)) == (live, orphan)


def load_target(tmp_path: Path, target: dict[str, Any]) -> TargetSettings:
    path = tmp_path / "imagesync.yaml"
    path.write_text(yaml.safe_dump({"targets": {"cloud": {"driver": "glance", "visibility": "private", **target}}}))
    return config.load(path).targets[0]


def test_upload_keys_default_to_the_direct_upload(tmp_path: Path) -> None:
    got = load_target(tmp_path, {})
    assert (got.upload, got.stores, got.all_stores, got.import_timeout) == ("direct", (), False, 1800.0)
    got = load_target(tmp_path, {"upload": "auto", "stores": ["ceph"], "import_timeout": 60})
    assert (got.upload, got.stores, got.import_timeout) == ("auto", ("ceph",), 60.0)


@pytest.mark.parametrize(("target", "problem"), [
    ({"upload": "copy-image"}, "targets.cloud.upload: 'copy-image' is not allowed"),
    ({"stores": ["a"], "all_stores": True}, "targets.cloud.stores: give store ids or all_stores: true, not both"),
    ({"import_timeout": 0}, "targets.cloud.import_timeout: 0 is out of range"),
])
def test_upload_keys_are_checked(tmp_path: Path, target: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_target(tmp_path, target)


class FakeImageAPI:
    """The image API's discovery answer, or a failure, as the keystoneauth1 adapter hands it over."""

    def __init__(self, methods: list[str] | None) -> None:
        self.methods = methods
        self.asked = 0

    def get(self, url: str) -> Any:
        assert url == "/v2/info/import"
        self.asked += 1
        if self.methods is None:
            raise TargetError("ask which import methods Glance offers: HTTP 404", subject="target t")
        return SimpleNamespace(json=lambda: {"import-methods": {"value": self.methods}})


def importer(upload_method: str, api: FakeImageAPI) -> Importer:
    settings = TargetSettings(name="t", driver="glance", upload=cast(UploadMethod, upload_method))
    return Importer(settings, client=lambda: None, images=api, calls=lambda _what: nullcontext(),
                    verify=lambda _image, _upload: None)


@pytest.mark.parametrize(("configured", "offered", "method"), [
    ("auto", ["glance-direct", "web-download"], "web-download"),
    ("auto", ["glance-direct"], "direct"),
    ("auto", None, "direct"),  # a Glance without the import API: auto uploads, the action does not fail
    ("web-download", ["glance-direct"], "web-download"),  # asked for explicitly: tried, falls back if refused
    ("glance-direct", [], "glance-direct"),
    ("direct", ["web-download"], "direct"),
])
def test_auto_pulls_only_where_the_cloud_offers_it(configured: str, offered: list[str] | None, method: str) -> None:
    assert importer(configured, FakeImageAPI(offered)).method(upload("https://cdn.example.org/a.img")) == method


def test_the_cloud_is_asked_once_and_each_reason_told_once(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeImageAPI(["glance-direct"])
    auto = importer("auto", api)
    with caplog.at_level(logging.INFO, logger="imagesync.targets.glance.importing"):
        methods = [auto.method(upload(f"https://cdn.example.org/{n}.img")) for n in range(3)]
        methods.append(auto.method(upload("https://cdn.example.org/c.img", sha512="0" * 128)))
    assert methods == ["direct"] * 4 and api.asked == 1
    assert [r.getMessage().split("where ")[1] for r in caplog.records] == [
        "the cloud offers no web-download import (only glance-direct)",
        "it is converted before upload (Glance would get the unconverted bytes)"]
