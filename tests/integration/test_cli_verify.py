"""``imagesync verify`` as operators run it (a real subprocess) on files signed with the test PKI: what it says
about who signed a list, unsigned lists, and CRL settings written the way YAML reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.samples import Party, TestPKI, hepix_list, list_for, openssl_sign


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGESYNC_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "imagesync", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def signed_file(tmp_path: Path, pki: TestPKI, signer: Party, content: bytes | None = None) -> Path:
    path = tmp_path / f"{signer.label}.list"
    path.write_bytes(openssl_sign("detached", content or list_for(signer), signer, pki=pki))
    return path


def test_crl_off_unquoted_in_the_config(pki: TestPKI, tmp_path: Path) -> None:
    # YAML 1.1 reads a bare `off` as false; the documented setting must still mean "no CRL checks".
    config = tmp_path / "imagesync.yaml"
    config.write_text(f"trust:\n  ca_dir: {pki.ca_dir}\n  crl: off\n")
    result = run("verify", str(signed_file(tmp_path, pki, pki.revoked)), config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("VERIFIED")


def test_crl_option_off_and_if_present(pki: TestPKI, tmp_path: Path) -> None:
    path, absent = signed_file(tmp_path, pki, pki.revoked), tmp_path / "absent.yaml"
    off = run("verify", str(path), "--ca-dir", str(pki.ca_dir), "--crl", "off", config=absent)
    assert off.returncode == 0, off.stdout + off.stderr
    checked = run("verify", str(path), "--ca-dir", str(pki.ca_dir), "--crl", "if_present", config=absent)
    assert checked.returncode == 1 and "is revoked by" in checked.stdout


def test_signer_shown_when_it_is_not_the_lists_endorser(pki: TestPKI, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    content = hepix_list(identifier="mismatch", created=now - timedelta(hours=1), expires=now + timedelta(days=1),
                         endorser_dn="/DC=org/DC=imagesync-test/O=Hosts/CN=someone.else", endorser_ca=pki.grid.dn)
    path, absent = signed_file(tmp_path, pki, pki.valid, content), tmp_path / "absent.yaml"
    result = run("verify", str(path), "--ca-dir", str(pki.ca_dir), "--format", "json", config=absent)
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["verified"] is False and "but the list names endorser" in data["error"]
    assert data["signer"] == {"dn": pki.valid.dn, "ca": pki.grid.dn}
    text = run("verify", str(path), "--ca-dir", str(pki.ca_dir), config=absent)
    assert text.returncode == 1
    assert text.stdout.startswith("NOT VERIFIED")
    assert f"  signer:  {pki.valid.dn}\n  ca:      {pki.grid.dn}\n" in text.stdout


def test_signer_shown_when_it_is_not_the_configured_endorser(pki: TestPKI, tmp_path: Path) -> None:
    path, absent = signed_file(tmp_path, pki, pki.second), tmp_path / "absent.yaml"
    result = run("verify", str(path), "--ca-dir", str(pki.ca_dir), "--format", "json", "--endorser-dn",
                 pki.valid.dn, "--endorser-ca", pki.grid.dn, config=absent)
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["verified"] is False and "not by the configured endorser" in data["error"]
    assert data["signer"] == {"dn": pki.second.dn, "ca": pki.grid.dn}


def test_no_signer_shown_when_the_signature_did_not_verify(pki: TestPKI, tmp_path: Path) -> None:
    path, absent = signed_file(tmp_path, pki, pki.revoked), tmp_path / "absent.yaml"
    data = json.loads(run("verify", str(path), "--ca-dir", str(pki.ca_dir), "--format", "json", config=absent).stdout)
    assert data["verified"] is False and data["signer"] is None


def test_unsigned_list_is_accepted_not_verified(pki: TestPKI, tmp_path: Path) -> None:
    plain = tmp_path / "plain.list"
    plain.write_bytes(list_for(pki.valid))
    config = tmp_path / "imagesync.yaml"
    config.write_text(f"lists:\n  plain:\n    url: file://{plain}\n    signature: none\n")
    text = run("verify", "plain", config=config)
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.startswith(f"ACCEPTED UNSIGNED  file://{plain}\n")
    assert "VERIFIED" not in text.stdout
    data = json.loads(run("verify", "plain", "--format", "json", config=config).stdout)
    # `verified` stays "passed the checks its configuration asks for" (exit 0); `unsigned` says there were none.
    assert data["verified"] is True and data["unsigned"] is True and data["signer"] is None
    assert data["list"]["images"] == 2
