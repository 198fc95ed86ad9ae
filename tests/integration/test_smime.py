"""S/MIME verification of every publisher form against a real test PKI, with `openssl cms -verify` as oracle."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagesync.config.settings import Endorser
from imagesync.demo import pki as pki_mod
from imagesync.errors import (
    BadSignatureError,
    EndorserMismatchError,
    ImagesyncError,
    ListExpiredError,
    MalformedSignatureError,
    RevokedError,
    RollbackError,
    UntrustedSignerError,
    WeakAlgorithmError,
)
from imagesync.model import VerifiedContent
from imagesync.sources.hepix import smime
from imagesync.sources.hepix.accept import Expectation, Verifier, accept
from imagesync.sources.hepix.castore import CAStore, CrlMode
from tests.support.samples import (
    FORMS,
    Party,
    TestPKI,
    hepix_list,
    list_for,
    name,
    openssl_sign,
    oracle_verify,
    tamper,
    tamper_embedded,
)

NOW = datetime.now(UTC)
GOOD_FORMS = [f for f in FORMS if f not in ("nocerts", "sha1")]


def store(directory: Path, crl: CrlMode = "if_present") -> CAStore:
    return CAStore.load(directory, crl)


def check(blob: bytes, directory: Path, crl: CrlMode = "if_present", allow_sha1: bool = False) -> VerifiedContent:
    # Not NOW: the openssl-made sha1 certificate starts at its creation second, after this module was imported.
    return smime.verify(blob, store(directory, crl), now=datetime.now(UTC), allow_sha1=allow_sha1)


@pytest.mark.parametrize("form", GOOD_FORMS)
def test_every_form_verifies_like_openssl(pki: TestPKI, form: str) -> None:
    content = list_for(pki.ec if form == "ec" else pki.valid)
    blob = openssl_sign(form, content, pki=pki)
    assert oracle_verify(blob, pki.ca_dir, crl_check=True, binary=form == "detached_binary")
    modes: tuple[CrlMode, ...] = ("if_present", "require")
    for mode in modes:
        verified = check(blob, pki.ca_dir, mode)
        assert json.loads(verified.content) == json.loads(content)
        # SignerInfos are a SET: with two signers the order is the encoder's.
        assert (pki.ec if form == "ec" else pki.valid).dn in [s.dn for s in verified.signers]
        assert {s.ca for s in verified.signers} == {pki.grid.dn}


@pytest.mark.parametrize("form", GOOD_FORMS)
def test_tampered_content_is_rejected_like_openssl(pki: TestPKI, form: str) -> None:
    blob = tamper(openssl_sign(form, list_for(pki.ec if form == "ec" else pki.valid), pki=pki), form)
    assert not oracle_verify(blob, pki.ca_dir, crl_check=True, binary=form == "detached_binary")
    with pytest.raises(BadSignatureError):
        check(blob, pki.ca_dir)


def test_embedded_copy_differing_from_clear_copy(pki: TestPKI) -> None:
    blob = tamper_embedded(openssl_sign("crypto_embedded", list_for(pki.valid), pki=pki))
    # openssl checks only the clear copy and accepts this; we refuse the ambiguity.
    with pytest.raises(BadSignatureError, match="two different copies"):
        check(blob, pki.ca_dir)


@pytest.mark.parametrize(("label", "error", "message"), [
    ("expired", UntrustedSignerError, "expired on"),
    ("not_yet_valid", UntrustedSignerError, "not valid before"),
    ("untrusted", UntrustedSignerError, "does not chain"),
    ("critical_ext", UntrustedSignerError, "unknown critical extension"),
    ("proxy", UntrustedSignerError, "proxy certificate"),
    ("encipher_only", UntrustedSignerError, "keyUsage"),
    ("server_only", UntrustedSignerError, "extendedKeyUsage"),
    ("sha1_cert", UntrustedSignerError, "does not chain"),
    ("revoked", RevokedError, "is revoked by"),
])
def test_unfit_signers_are_rejected(pki: TestPKI, label: str, error: type[ImagesyncError], message: str) -> None:
    signer = pki.party(label)
    blob = openssl_sign("detached", list_for(signer), signer, pki=pki)
    with pytest.raises(error, match=message) as info:
        check(blob, pki.ca_dir)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("label", ["robot", "direct_root", "utf8", "ec", "second"])
def test_fit_signers_are_accepted(pki: TestPKI, label: str) -> None:
    signer = pki.party(label)
    verified = check(openssl_sign("detached", list_for(signer), signer, pki=pki), pki.ca_dir, "require")
    assert verified.signer is not None and verified.signer.dn == signer.dn


def test_revoked_signer_passes_only_with_crl_off(pki: TestPKI) -> None:
    blob = openssl_sign("detached", list_for(pki.revoked), pki.revoked, pki=pki)
    assert check(blob, pki.ca_dir, "off").signer is not None
    assert oracle_verify(blob, pki.ca_dir, crl_check=False)
    assert not oracle_verify(blob, pki.ca_dir, crl_check=True)


def test_crl_modes(pki: TestPKI) -> None:
    blob = openssl_sign("detached", list_for(pki.valid), pki=pki)
    with pytest.raises(RevokedError, match="stale"):
        check(blob, pki.ca_dir_stale, "if_present")
    assert not oracle_verify(blob, pki.ca_dir_stale, crl_check=True)
    assert check(blob, pki.ca_dir_stale, "off").signer is not None
    assert check(blob, pki.ca_dir_nocrl, "if_present").signer is not None
    with pytest.raises(RevokedError, match="no CRL for CA"):
        check(blob, pki.ca_dir_nocrl, "require")


def test_root_only_directory_needs_the_intermediate_in_the_message(pki: TestPKI) -> None:
    content = list_for(pki.valid)
    with pytest.raises(UntrustedSignerError, match="does not chain"):
        check(openssl_sign("detached", content, pki=pki), pki.ca_dir_root_only)
    assert not oracle_verify(openssl_sign("detached", content, pki=pki), pki.ca_dir_root_only, crl_check=False)
    carried = openssl_sign("with_intermediate", content, pki=pki)
    assert check(carried, pki.ca_dir_root_only).signer is not None
    assert oracle_verify(carried, pki.ca_dir_root_only, crl_check=False)


def test_sha1_refused_unless_allowed(pki: TestPKI) -> None:
    blob = openssl_sign("sha1", list_for(pki.valid), pki=pki)
    with pytest.raises(WeakAlgorithmError, match="SHA1"):
        check(blob, pki.ca_dir)
    assert check(blob, pki.ca_dir, allow_sha1=True).signer is not None


def test_no_signer_certificate(pki: TestPKI) -> None:
    blob = openssl_sign("nocerts", list_for(pki.valid), pki=pki)
    with pytest.raises(UntrustedSignerError, match="no certificate for its signer"):
        check(blob, pki.ca_dir)


def test_two_signers_both_reported(pki: TestPKI) -> None:
    verified = check(openssl_sign("two_signers", list_for(pki.valid), pki=pki), pki.ca_dir)
    assert sorted(s.dn for s in verified.signers) == sorted([pki.valid.dn, pki.second.dn])


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("form", ["detached", "opaque", "pem", "der", "ber_stream"])
def test_truncation(pki: TestPKI, form: str, cut: float) -> None:
    blob = openssl_sign(form, list_for(pki.valid), pki=pki)
    with pytest.raises((MalformedSignatureError, BadSignatureError)):
        check(blob[: int(len(blob) * cut)], pki.ca_dir)


# --- the whole acceptance: signature + parse + endorser + freshness -----------------------------------------

def verifier(pki: TestPKI) -> Verifier:
    return Verifier(ca_dir=pki.ca_dir, crl="if_present", gpg_home=pki.directory / "no-gpg")


def test_list_endorser_must_be_the_signer(pki: TestPKI) -> None:
    blob = openssl_sign("detached", list_for(pki.second), pki.valid, pki=pki)
    with pytest.raises(EndorserMismatchError, match="but the list names endorser") as info:
        accept(blob, Expectation(), verifier(pki), source="fedcloud", now=NOW)
    assert str(info.value).startswith("fedcloud: signed by ")


def test_configured_endorser(pki: TestPKI) -> None:
    blob = openssl_sign("detached", list_for(pki.valid), pki=pki)
    wrong = Expectation(endorser=Endorser(dn=pki.second.dn, ca=pki.grid.dn))
    with pytest.raises(EndorserMismatchError, match="not by the configured endorser"):
        accept(blob, wrong, verifier(pki), source="l", now=NOW)
    # The RFC 4514 form of the same names matches too.
    rfc = Expectation(endorser=Endorser(dn=pki.valid.cert.subject.rfc4514_string(),
                                        ca=pki.valid.cert.issuer.rfc4514_string()))
    accepted = accept(blob, rfc, verifier(pki), source="l", now=NOW)
    assert accepted.signer is not None and accepted.signer.dn == pki.valid.dn
    assert len(accepted.image_list.images) == 2


def test_utf8_endorser_in_old_unescaped_form(pki: TestPKI) -> None:
    signer = pki.utf8
    blob = openssl_sign("detached", list_for(signer), signer, pki=pki)
    old_style = signer.dn.replace("\\/", "/").replace("\\+", "+")
    accepted = accept(blob, Expectation(endorser=Endorser(dn=old_style, ca=signer.ca_dn)), verifier(pki),
                      source="l", now=NOW)
    assert accepted.signer is not None


def test_expired_list_and_rollback(pki: TestPKI) -> None:
    old = hepix_list(identifier="x", created=NOW - timedelta(days=40), expires=NOW - timedelta(days=1),
                     endorser_dn=pki.valid.dn, endorser_ca=pki.grid.dn)
    with pytest.raises(ListExpiredError):
        accept(openssl_sign("detached", old, pki=pki), Expectation(), verifier(pki), source="l", now=NOW)
    fresh = openssl_sign("detached", list_for(pki.valid), pki=pki)
    with pytest.raises(RollbackError):
        accept(fresh, Expectation(), verifier(pki), source="l", now=NOW, previous_created=NOW)


def test_unsigned_list_accepted_only_when_configured(pki: TestPKI) -> None:
    content = list_for(pki.valid)
    accepted = accept(content, Expectation(signature="none"), verifier(pki), source="l", now=NOW)
    assert accepted.unsigned and accepted.signer is None
    with pytest.raises(MalformedSignatureError, match="signature: none"):
        accept(content, Expectation(), verifier(pki), source="l", now=NOW)


# --- revocation beyond the signer, and what the signature covers ---------------------------------------------

def _party(directory: Path, label: str, cred: pki_mod.Credential) -> Party:
    cert_path, key_path = cred.write(directory, label)
    return Party(label=label, cred=cred, cert_path=cert_path, key_path=key_path)


def test_intermediate_revoked_by_the_root_crl(pki: TestPKI, tmp_path: Path) -> None:
    # Every CA of the directory is an anchor, so the path stops at the intermediate: its revocation by the
    # root must be found anyway (openssl -crl_check_all does).
    inter = pki_mod.make_ca(name(("DC", "org"), ("DC", "imagesync-test"), ("CN", "Revoked Grid CA")),
                            issuer=pki.root.cred)
    signer = _party(tmp_path, "s", pki_mod.make_leaf(inter, name(("DC", "org"), ("CN", "under revoked CA"))))
    directory = pki_mod.write_ca_dir(tmp_path / "ca", [pki.root.cred, inter],
                                     [pki_mod.make_crl(pki.root.cred, [inter.cert.serial_number]),
                                      pki_mod.make_crl(inter, [])])
    blob = openssl_sign("detached", list_for(signer), signer, pki=pki)
    assert not oracle_verify(blob, directory, crl_check=True)
    with pytest.raises(RevokedError, match="Revoked Grid CA"):
        check(blob, directory)
    assert check(blob, directory, "off").signer is not None


def test_crl_not_signed_by_its_ca_is_an_error(pki: TestPKI, tmp_path: Path) -> None:
    forged = pki_mod.make_crl(pki.untrusted_ca.cred, [])  # same issuer name as the grid CA, other key
    directory = pki_mod.write_ca_dir(tmp_path / "ca", [pki.root.cred, pki.grid.cred],
                                     [pki_mod.make_crl(pki.root.cred, []), forged])
    with pytest.raises(RevokedError, match="not signed by that CA"):
        check(openssl_sign("detached", list_for(pki.valid), pki=pki), directory)


def test_signature_over_another_content_type_is_refused(pki: TestPKI, tmp_path: Path) -> None:
    content = tmp_path / "list.json"
    content.write_bytes(list_for(pki.valid))
    blob = subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-outform", "DER", "-econtent_type", "1.2.3.4",
                           "-signer", str(pki.valid.cert_path), "-inkey", str(pki.valid.key_path),
                           "-in", str(content)], capture_output=True, check=True).stdout
    with pytest.raises(MalformedSignatureError, match="not plain data"):
        check(blob, pki.ca_dir)
