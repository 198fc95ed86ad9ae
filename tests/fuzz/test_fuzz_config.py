"""Fuzz the configuration loader (imagesync.yaml + image-lists.conf) with mutated real configurations.

Oracle: ``config.load`` returns Settings or raises a one-line ConfigError naming the file; nothing else.
(Paths and secrets are relative to a scratch directory, so a mutated config never reaches outside it unless it
names an absolute path, which only ever reads.)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.errors import ImagesyncError
from imagesync.util import redact
from tests.fuzz import campaign
from tests.fuzz.documents import yaml_mutation
from tests.fuzz.mutators import bytes_mutation

CASES = 3000
FULL = b"""\
state_dir: state
cache_dir: cache
image_lists_file: image-lists.conf
trust:
  ca_dir: certificates
  crl: if_present
  gpg_home: gnupg
  allow_sha1: false
download:
  concurrency: 2
  retries: 5
  timeout: 60
  min_free_space: 10GiB
  max_image_size: 200GiB
lists:
  fedcloud:
    url: https://vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list
    token_file: tokens/fedcloud
    signature: smime
    endorser: {dn: "/DC=EU/DC=EGI/C=NL/O=Hosts/O=EGI.eu/CN=appdb.egi.eu", ca: "/DC=ORG/DC=SEE-GRID/CN=SEE-GRID CA 2013"}
    images: []
    prefix: ""
    vo: null
    on_expiry: retire
    enabled: true
  signed-by-gpg:
    url: https://lists.example.org/image.list
    signature: gpg
    gpg_fingerprints: ["0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567"]
    signature_url: https://lists.example.org/image.list.sig
targets:
  mycloud:
    driver: glance
    auth: {auth_type: password, auth_url: "https://keystone.example.org:5000/v3", username: sync,
           password_file: secrets/password, project_name: images, user_domain_name: Default,
           project_domain_name: Default}
    region: RegionOne
    disk_formats: [qcow2, raw]
    visibility: shared
    projects_file: mapping.json
    tag: imagesync
    retire: {mode: deactivate, keep_versions: 0, delete_after: 7d}
  archive:
    driver: directory
    path: /srv/images
"""
MINIMAL = b"targets:\n  archive: {driver: directory, path: images}\n"
LISTS_FILE = b"""\
# cloudkeeper-compatible
https://vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list
https://TOKENVALUE1234:x-oauth-basic@vmcaster.appdb.egi.eu/store/vo/ops/image.list  # with a token
https://vmcaster.appdb.egi.eu/store/vappliance/ubuntu/image.list
"""
CORPUS = (FULL, MINIMAL, FULL.replace(b"crl: if_present", b"crl: require"))


@pytest.fixture
def config_dir(tmp_path: Path) -> Iterator[Path]:
    """The directory the mutated configs live in, with the token file the full example names."""
    work = tmp_path / "work"
    (work / "tokens").mkdir(parents=True)
    (work / "tokens" / "fedcloud").write_text("fuzz-token-value\n")
    # Mutated configs register mutated tokens with the redactor; later tests in this process must not see them.
    saved = set(redact._secrets)
    yield work
    redact._secrets.clear()
    redact._secrets.update(saved)


def mutate(rng: random.Random) -> tuple[tuple[bytes, bytes], str]:
    content, lists = rng.choice(CORPUS), LISTS_FILE
    if rng.random() < 0.2:
        lists, note = bytes_mutation(rng, LISTS_FILE, (LISTS_FILE,))
        return (content, lists), f"lists file: {note}"
    if rng.random() < 0.7:
        try:
            content, note = yaml_mutation(rng, content)
            return (content, lists), note
        except ValueError:
            pass
    content, note = bytes_mutation(rng, content, CORPUS)
    return (content, lists), note


def check(files: tuple[bytes, bytes], directory: Path) -> str:
    path = directory / "imagesync.yaml"
    path.write_bytes(files[0])
    (directory / "image-lists.conf").write_bytes(files[1])
    try:
        settings = config.load(path)
    except ImagesyncError as exc:
        # One line naming the file at fault (the config or the image-lists file next to it).
        assert "\n" not in str(exc) and exc.subject is not None and str(directory) in exc.subject, str(exc)
        return type(exc).__name__
    assert settings.trust.crl in ("off", "if_present", "require")
    assert all(item.signature in ("smime", "gpg", "none") for item in settings.lists)
    return "loaded"


def save(files: tuple[bytes, bytes], path: Path) -> None:
    path.write_bytes(files[0])
    path.with_suffix(".lists").write_bytes(files[1])


def test_fuzz_config_load(config_dir: Path, tmp_path: Path) -> None:
    outcomes = campaign.run("config", CASES, mutate, lambda files: check(files, config_dir), save=save,
                            out_dir=tmp_path)
    if campaign.replaying():
        return
    assert outcomes["loaded"] > len(CORPUS)
    assert outcomes["ConfigError"] > sum(outcomes.values()) // 4
