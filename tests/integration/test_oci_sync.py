"""Syncing from a real OCI registry (docker-registry 2.8 with htpasswd auth, TLS from a test CA) into a directory
target, through the whole pipeline: artifacts pushed by oras-py, signatures by our cosign-format signer (the real
cosign's own signatures are checked in tests/unit/test_cosign.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from imagesync.demo import cosign as cosign_sign
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.run.pipeline import SyncResult, sync
from imagesync.sources.oci.bundle import BUNDLE_MEDIA_TYPE
from tests.support import cli, oci_push
from tests.support.oci_registry import Registries, logged_after
from tests.support.oci_site import Site, disk, new_site


@pytest.fixture
def site(tmp_path: Path, oci_registries: Registries) -> Site:
    return new_site(tmp_path, oci_registries.get("htpasswd"))


def kinds(result: SyncResult) -> list[tuple[str, str]]:
    return sorted((r.action.kind, r.status) for r in result.results)


def test_first_sync_then_a_noop_that_downloads_nothing(site: Site) -> None:
    data = disk(b"disk one")
    site.push("24.04", data)
    settings = site.config()
    first = sync(settings, dry_run=False)
    assert first.exit_code == EXIT_OK, [r.error for r in first.results] + [o.error for o in first.lists]
    assert kinds(first) == [("add", "done")]
    [held] = site.held()
    assert held.read_bytes() == data
    _, offset = logged_after(site.server.registry.log_file, 0)
    again = sync(settings, dry_run=False)
    assert again.exit_code == EXIT_OK
    assert kinds(again) == [("keep", "done")] and again.bytes_downloaded == 0
    assert [o.status for o in again.lists] == ["unchanged"]
    # What the registry was asked (its own access log): tag lists and manifest digests only, no body of anything.
    asked = {(r.kind, r.method) for r in logged_after(site.server.registry.log_file, offset)[0]
             if site.repository in r.path}
    assert asked == {("tags/list", "GET"), ("manifest", "HEAD")}, asked


def test_a_repushed_floating_tag_is_a_new_version_and_the_old_one_retires_after(site: Site) -> None:
    site.push("24.04", disk(b"build one"))
    settings = site.config()
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    site.push("24.04", disk(b"build two"))
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_OK
    [update] = [r for r in result.results if r.action.kind == "update"]
    assert update.status == "done" and update.action.supersedes


def test_a_deleted_tag_retires_its_image(site: Site) -> None:
    site.push("24.04", disk(b"keep me"))
    site.push("22.04", disk(b"drop me"))
    settings = site.config()
    assert kinds(sync(settings, dry_run=False)) == [("add", "done"), ("add", "done")]
    oci_push.delete_manifest(site.server, site.repository, "22.04")
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("keep", "done"), ("retire", "done")]


def test_a_registry_that_is_down_retires_nothing(site: Site) -> None:
    site.push("24.04", disk(b"still here"))
    assert sync(site.config(), dry_run=False).exit_code == EXIT_OK
    down = site.config(url="https://127.0.0.1:9")  # nothing listens on the discard port
    result = sync(down, dry_run=False)
    assert result.exit_code != EXIT_OK
    [outcome] = result.lists
    assert outcome.status == "failed" and "registry 127.0.0.1:9" in (outcome.error or "")
    assert kinds(result) == [("keep", "done")]
    assert len(site.held()) == 1


def test_wrong_blob_bytes_are_refused(site: Site) -> None:
    data = disk(b"the real bytes")
    pushed = site.push("24.04", data)
    site.server.tamper_blob(pushed.layer_digest, b"real", b"fake")
    result = sync(site.config(), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    [add] = result.results
    assert add.status == "failed" and "checksum mismatch" in (add.error or "")
    assert site.held() == []


def test_unsigned_or_wrongly_signed_artifacts_are_refused_and_kept_out(site: Site) -> None:
    site.push("unsigned", disk(b"nobody signed me"), sign=False)
    stranger = cosign_sign.new_private_key()
    wrong = site.push("wrong", disk(b"a stranger signed me"), sign=False)
    site.sign(wrong.digest, stranger)
    site.push("good", disk(b"signed by our key"))
    result = sync(site.config(), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    [outcome] = result.lists
    assert len(outcome.problems) == 2 and all("signature" in p for p in outcome.problems), outcome.problems
    assert [r.action.identifier.rsplit(":", 1)[1] for r in result.results] == ["good"]
    assert len(site.held()) == 1


def test_a_signature_found_through_the_referrers_tag_schema_is_accepted(site: Site) -> None:
    pushed = site.push("24.04", disk(b"signed the OCI 1.1 way"), sign=False)
    site.sign(pushed.digest, site.key, referrer=True)
    result = sync(site.config(), dry_run=False)
    assert kinds(result) == [("add", "done")], result.lists[0].problems


@pytest.mark.parametrize("listed_as", [BUNDLE_MEDIA_TYPE, "application/vnd.oci.empty.v1+json"])
def test_an_artifact_signed_only_the_cosign_3_way_syncs(site: Site, listed_as: str) -> None:
    # A Sigstore bundle referrer and no `.sig` tag: what `cosign sign --key` (>= 3.0) pushes. cosign 3.0.x's
    # registry library listed it in the tag schema's index under the empty config type, 3.1 under its own.
    pushed = site.push("24.04", disk(b"signed the cosign 3 way"), sign=False)
    site.sign_bundle(pushed.digest, site.key, listed_as=listed_as)
    result = sync(site.config(), dry_run=False)
    assert kinds(result) == [("add", "done")], result.lists[0].problems
    [held] = site.held()
    assert held.read_bytes() == disk(b"signed the cosign 3 way")


def test_a_cosign_3_bundle_by_another_key_is_refused(site: Site) -> None:
    pushed = site.push("stranger", disk(b"a stranger's bundle"), sign=False)
    site.sign_bundle(pushed.digest, cosign_sign.new_private_key())
    site.push("unsigned", disk(b"nothing at all"), sign=False)
    result = sync(site.config(), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL and result.results == []
    problems = sorted(result.lists[0].problems)
    assert len(problems) == 2, problems
    assert "no valid signature by a configured key in the Sigstore bundle" in problems[0], problems
    assert "neither a legacy signature (.sig tag or referrer) nor a cosign 3 Sigstore bundle" in problems[1], problems
    assert site.held() == []


def test_signature_none_syncs_unsigned_and_says_so(site: Site) -> None:
    site.push("24.04", disk(b"unsigned on purpose"), sign=False)
    settings = site.config(signature="none", cosign_keys=None)
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("add", "done")]
    assert result.lists[0].accepted is not None and result.lists[0].accepted.unsigned


def test_artifacts_without_the_required_annotation_are_skipped_with_a_note(site: Site) -> None:
    site.push("24.04", disk(b"no egi tag"), annotations={"org.openstack.glance.disk_format": "raw"})
    result = sync(site.config(required_annotation="eu.egi.cloud.tag"), dry_run=False)
    assert result.results == []
    assert any("no eu.egi.cloud.tag annotation" in note for note in result.plan.notes)


def test_a_static_bearer_token_from_a_file_is_sent_instead_of_a_login(tmp_path: Path,
                                                                      oci_registries: Registries) -> None:
    from tests.support.oci_token import SERVICE

    server = oci_registries.get("token")
    assert server.login is not None and server.token_service is not None
    site = new_site(tmp_path, server)
    site.push("24.04", disk(b"behind a token"))
    # A token as a CI system would hand one out: asked of the token service once, with the account's password.
    answer = requests.get(server.token_service.realm, params={"service": SERVICE,
                                                               "scope": f"repository:{site.repository}:pull"},
                          auth=(server.login.username, server.login.password), verify=str(server.ca_file), timeout=10)
    token_file = tmp_path / "registry.token"
    token_file.write_text(answer.json()["token"])
    token_file.chmod(0o600)
    settings = site.config(username=None, password=None, token_file=str(token_file))
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("add", "done")], [o.error for o in result.lists]
    assert [r.user for r in server.token_service.requests][-1] == server.login.username  # ours, not the sync's


def test_list_option_names_a_registry_and_a_vo_of_a_registry_of_several(site: Site) -> None:
    site.push("24.04", disk(b"for two VOs"))
    settings = site.config(vo=None, vos=["vo.a", "vo.b"])
    result = sync(settings, dry_run=True, lists=("reg@vo.b",))
    assert [o.settings.name for o in result.lists] == ["reg@vo.b"]
    assert [(r.action.list_name, r.action.kind) for r in result.results] == [("reg@vo.b", "add")]
    both = sync(settings, dry_run=True, lists=("reg",))
    assert sorted(o.settings.name for o in both.lists) == ["reg@vo.a", "reg@vo.b"]


def test_a_newly_required_annotation_is_checked_on_artifacts_accepted_before(site: Site) -> None:
    site.push("24.04", disk(b"no egi tag, accepted while none was required"),
              annotations={"org.openstack.glance.disk_format": "raw"})
    assert kinds(sync(site.config(), dry_run=False)) == [("add", "done")]
    result = sync(site.config(required_annotation="eu.egi.cloud.tag"), dry_run=False)
    assert result.lists[0].problems and "no eu.egi.cloud.tag annotation" in result.lists[0].problems[0]
    assert kinds(result) == [("keep", "done")]  # refused now, but what the target holds of it stays


def test_the_cli_reports_a_registry_as_a_registry(site: Site) -> None:
    site.push("24.04", disk(b"reported"))
    site.push("unsigned", disk(b"refused"), sign=False)
    site.config()
    done = cli.run("sync", config=site.config_file)
    assert done.returncode == EXIT_PARTIAL, done.stderr
    assert "registry reg: ok, 1 images, 1 refused (see the notes)" in done.stdout
    assert "unsigned: no cosign signature" in done.stdout
    listed = cli.run("lists", "--format", "json", config=site.config_file)
    [entry] = json.loads(listed.stdout)["lists"]
    assert entry["kind"] == "oci" and entry["status"] == "ok" and entry["images"] == 1
