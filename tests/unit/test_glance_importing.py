"""Which images Glance may fetch itself, what the import call sends, and the target keys that choose it
(imagesync.targets.glance.importing): plain tables."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.config.settings import TargetSettings
from imagesync.errors import ConfigError
from imagesync.model import DesiredImage, Image
from imagesync.targets.base import Upload
from imagesync.targets.glance.importing import import_body, source_problem
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
    ({"stores": ["a"], "all_stores": True}, "targets.cloud.all_stores: give either stores or all_stores"),
    ({"import_timeout": 0}, "targets.cloud.import_timeout: 0 is out of range"),
])
def test_upload_keys_are_checked(tmp_path: Path, target: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_target(tmp_path, target)
