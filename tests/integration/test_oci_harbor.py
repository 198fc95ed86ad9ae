"""``harbor_project:`` end to end: the repositories come from Harbor's REST listing (tests/support/fake_harbor.py, a
FAKE of those endpoints written from Harbor's API description), the tags, manifests, signatures and blobs from a
REAL registry (docker-registry, htpasswd) that the fake relays ``/v2`` to, into a directory target.

Paging: imagesync asks ``page_size=100`` and the fake, like Harbor, refuses more than 100 and has no smaller cap to
set. So the project really holds 103 repositories, each pushed upstream (Harbor lists only repositories that hold
an artifact, and a listed repository whose tags cannot be read fails the whole registry, rightly): 101 fillers,
tagged only with EGI-style unique tags that ``tag_pattern: '^[^-]*$'`` does not follow, and the two real ones,
created first so that Harbor's newest-first order puts them on page 2.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo import cosign as cosign_sign
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import SyncResult, sync
from imagesync.sources.oci.cosign import signature_tag
from tests.support import oci_push
from tests.support.fake_harbor import FakeArtifact, FakeHarbor, FakeProject, FakeRepository
from tests.support.oci_registry import Registries, RegistryServer
from tests.support.tls import client_context, server_context

T0 = datetime.datetime(2025, 9, 4, 12, 0, tzinfo=datetime.UTC)
FILLERS = 101
EGI = {"eu.egi.cloud.tag": "2025-10-07-fc45d0d3", "org.openstack.glance.disk_format": "raw"}
# repository -> (floating tag, unique tag) pairs, each pair one pushed artifact
PUSHED = {"ubuntu": (("24.04", "24.04-2025-10-07-fc45d0d3"), ("22.04", "22.04-2025-10-07-fc45d0d3")),
          "alma": (("9", "9-2025-10-07-fc45d0d3"),)}


@dataclass
class Harbor:
    fake: FakeHarbor
    server: RegistryServer
    project: str
    key_file: Path

    def config(self, root: Path, **registry: object) -> config.Settings:
        assert self.server.login is not None
        entry: dict[str, object] = {
            "url": self.fake.url, "harbor_project": self.project, "tag_pattern": "^[^-]*$", "signature": "cosign",
            "cosign_keys": [str(self.key_file)], "username": self.server.login.username,
            "password": self.server.login.password, "required_annotation": "eu.egi.cloud.tag", **registry}
        data = {"state_dir": str(root / "state"), "cache_dir": str(root / "cache"),
                "trust": {"ca_dir": str(self.server.ca_dir)},
                "download": {"retries": 1, "min_free_space": "1MiB", "allowed_networks": ["127.0.0.0/8"]},
                "targets": {"archive": {"driver": "directory", "path": str(root / "archive")}},
                "registries": {"harbor": {k: v for k, v in entry.items() if v is not None}}}
        (root / "imagesync.yaml").write_text(yaml.safe_dump(data))
        return config.load(root / "imagesync.yaml")


def _disk(text: str) -> bytes:
    return b"\x00" * 4096 + text.encode()


def _push(server: RegistryServer, key: cosign_sign.PrivateKey, repository: str, tags: tuple[str, ...],
          data: bytes) -> FakeArtifact:
    """One signed artifact under ``tags``, pushed by oras-py; what Harbor would list for it."""
    pushed = oci_push.push_artifact(server, repository, tags[0], data, annotations=EGI)
    for tag in tags[1:]:
        oci_push.push_manifest(server, repository, tag, pushed.manifest)
    made = cosign_sign.sig_manifest([cosign_sign.signature_layer(key, pushed.digest)])
    for blob in made.blobs.values():
        oci_push.push_blob(server, repository, blob)
    oci_push.push_manifest(server, repository, signature_tag(pushed.digest), made.manifest)
    return FakeArtifact(pushed.digest, tags=tags, push_time=T0, size=len(data))


@pytest.fixture(scope="module")
def harbor(oci_registries: Registries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harbor]:
    server = oci_registries.get("htpasswd")
    assert server.login is not None
    key = cosign_sign.new_private_key()
    key_file = tmp_path_factory.mktemp("harbor") / "cosign.pub"
    key_file.write_bytes(cosign_sign.public_key_pem(key))
    project = f"vo{uuid.uuid4().hex[:6]}.example.eu"  # named like a VO: the VO its images go to
    repos = [FakeRepository(name, created=T0, artifacts=tuple(
        _push(server, key, f"{project}/{name}", pair, _disk(f"{name} {pair[0]}")) for pair in pairs))
        for name, pairs in PUSHED.items()]
    for n in range(FILLERS):
        filler = _push(server, key, f"{project}/fill{n:03d}", ("1.0-2025-01-01-00000000",), _disk(f"filler {n}"))
        repos.append(FakeRepository(f"fill{n:03d}", artifacts=(filler,), created=T0 + datetime.timedelta(hours=n + 1)))
    fake = FakeHarbor(tls=server_context(server.pki), projects=[FakeProject(project, tuple(repos), members=frozenset(
        {server.login.username}))], accounts={server.login.username: server.login.password}, upstream=server.url,
        upstream_tls=client_context(server.pki))
    with fake:
        yield Harbor(fake, server, project, key_file)


def kinds(result: SyncResult) -> list[tuple[str, str, str]]:
    return sorted((r.action.kind, r.action.identifier.rsplit("/", 1)[1], r.status) for r in result.results)


def held_vos(root: Path) -> dict[str, str]:
    """imagesync_image_id -> ad_vo of what the directory target holds (retired ones excluded)."""
    sidecars = (json.loads(p.read_text())["properties"] for p in (root / "archive").glob("*/*.json"))
    return {props["imagesync_image_id"]: props["ad_vo"] for props in sidecars}


def test_both_pages_are_listed_the_vo_is_the_project_and_only_floating_tags_follow(harbor: Harbor,
                                                                                   tmp_path: Path) -> None:
    mark = len(harbor.fake.requests)
    result = sync(harbor.config(tmp_path), dry_run=False)
    assert result.exit_code == EXIT_OK, [o.error for o in result.lists] + [r.error for r in result.results]
    assert kinds(result) == [("add", "alma:9", "done"), ("add", "ubuntu:22.04", "done"),
                             ("add", "ubuntu:24.04", "done")]
    listings = [s for s in harbor.fake.requests[mark:] if s.path.startswith("/api/") and "/artifacts" not in s.path]
    user = harbor.server.login.username if harbor.server.login else None
    assert [(s.path.split("?")[1], s.status, s.user) for s in listings] == [
        ("page=1&page_size=100", 200, user), ("page=2&page_size=100", 200, user)]
    base = f"{harbor.fake.host}/{harbor.project}"
    assert held_vos(tmp_path) == {f"{base}/{i}": harbor.project for i in ("alma:9", "ubuntu:22.04", "ubuntu:24.04")}


def test_a_noop_rerun_asks_harbor_one_artifacts_page_per_repository_and_the_registry_nothing(
        harbor: Harbor, tmp_path: Path) -> None:
    settings = harbor.config(tmp_path)
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    mark = len(harbor.fake.requests)
    again = sync(settings, dry_run=False)
    assert again.exit_code == EXIT_OK and again.bytes_downloaded == 0
    asked = harbor.fake.requests[mark:]
    # Every tag's digest comes with Harbor's artifacts listing: no tags/list, no manifest HEAD per tag.
    assert not [s.path for s in asked if s.path.startswith("/v2/")], [s.path for s in asked][:5]
    artifacts = [s for s in asked if "/artifacts" in s.path]
    assert len(artifacts) == len(PUSHED) + FILLERS and all(s.status == 200 for s in artifacts)


def test_images_subset(harbor: Harbor, tmp_path: Path) -> None:
    settings = harbor.config(tmp_path, images=[f"{harbor.project}/ubuntu:24.04"], vo="other.vo")
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("add", "ubuntu:24.04", "done")]
    assert held_vos(tmp_path) == {f"{harbor.fake.host}/{harbor.project}/ubuntu:24.04": "other.vo"}


def test_an_unknown_project_fails_the_source_and_retires_nothing(harbor: Harbor, tmp_path: Path) -> None:
    settings = harbor.config(tmp_path, images=[f"{harbor.project}/alma:9"], vo=harbor.project)
    assert kinds(sync(settings, dry_run=False)) == [("add", "alma:9", "done")]
    result = sync(harbor.config(tmp_path, harbor_project="no-such-project", vo=harbor.project), dry_run=False)
    assert result.exit_code != EXIT_OK
    [outcome] = result.lists
    assert outcome.status == "failed"
    # Harbor checks permission before existence: a member account gets 403 for a project it cannot see.
    assert "repositories of Harbor project no-such-project: HTTP 403: forbidden" in (outcome.error or ""), outcome
    assert kinds(result) == [("keep", "alma:9", "done")]
    assert list(held_vos(tmp_path)) == [f"{harbor.fake.host}/{harbor.project}/alma:9"]
