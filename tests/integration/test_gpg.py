"""GPG-signed lists with real gpg: clearsigned and detached, pinned fingerprints, foreign keys, tampering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gnupg
import pytest

from imagesync.errors import BadSignatureError, ConfigError, MalformedSignatureError, UntrustedSignerError
from imagesync.sources.hepix import gpg
from tests.support.gpgkeys import new_signing_key

CONTENT = b'{"hv:imagelist": {"dc:identifier": "gpg-test"}}\n'


@dataclass(frozen=True)
class Keys:
    signer_home: Path
    trusted_home: Path
    pinned: str
    other: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    base = tmp_path_factory.mktemp("gpg")
    signer_home, trusted_home = base / "signer", base / "trusted"
    for home in (signer_home, trusted_home):
        home.mkdir(mode=0o700)
    signer = gnupg.GPG(gnupghome=str(signer_home))
    pinned = new_signing_key(signer, "lists@example.org")
    other = new_signing_key(signer, "other@example.org")
    trusted = gnupg.GPG(gnupghome=str(trusted_home))
    # The verifying ring holds both public keys: pinning, not the ring, must decide.
    for fpr in (pinned, other):
        assert trusted.import_keys(signer.export_keys(fpr)).count == 1
    return Keys(signer_home=signer_home, trusted_home=trusted_home, pinned=pinned, other=other)


def _sign(keys: Keys, fpr: str, *, detach: bool) -> bytes:
    engine = gnupg.GPG(gnupghome=str(keys.signer_home))
    signed = engine.sign(CONTENT, keyid=fpr, detach=detach, clearsign=not detach)
    assert signed.data, signed.stderr
    return bytes(signed.data)


def test_clearsigned_pinned_key(keys: Keys) -> None:
    verified = gpg.verify(_sign(keys, keys.pinned, detach=False), home=keys.trusted_home, fingerprints=(keys.pinned,))
    assert verified.kind == "gpg"
    assert verified.content.strip() == CONTENT.strip()
    assert verified.signer is not None and verified.signer.fingerprint == keys.pinned
    assert "lists@example.org" in verified.signer.dn


def test_detached_pinned_key(keys: Keys) -> None:
    signature = _sign(keys, keys.pinned, detach=True)
    verified = gpg.verify(CONTENT, home=keys.trusted_home, fingerprints=(keys.pinned,), signature=signature)
    assert verified.content == CONTENT


def test_key_in_ring_but_not_pinned_is_refused(keys: Keys) -> None:
    with pytest.raises(UntrustedSignerError, match="not pinned"):
        gpg.verify(_sign(keys, keys.other, detach=False), home=keys.trusted_home, fingerprints=(keys.pinned,))


def test_key_not_in_ring(keys: Keys, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    with pytest.raises(UntrustedSignerError, match="not in the keyring"):
        gpg.verify(_sign(keys, keys.pinned, detach=False), home=empty, fingerprints=(keys.pinned,))


def test_tampered_clearsigned(keys: Keys) -> None:
    blob = _sign(keys, keys.pinned, detach=False).replace(b"gpg-test", b"gpg-tesT")
    with pytest.raises(BadSignatureError):
        gpg.verify(blob, home=keys.trusted_home, fingerprints=(keys.pinned,))


def test_tampered_detached(keys: Keys) -> None:
    signature = _sign(keys, keys.pinned, detach=True)
    with pytest.raises(BadSignatureError):
        gpg.verify(CONTENT + b" ", home=keys.trusted_home, fingerprints=(keys.pinned,), signature=signature)


@pytest.mark.parametrize("blob", [b"", b"garbage", b"-----BEGIN PGP SIGNED MESSAGE-----\ntruncated"])
def test_garbage(keys: Keys, blob: bytes) -> None:
    with pytest.raises(MalformedSignatureError):
        gpg.verify(blob, home=keys.trusted_home, fingerprints=(keys.pinned,))


def test_missing_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        gpg.verify(b"x", home=tmp_path / "nope", fingerprints=("AB",))


def test_gpg_not_installed_is_a_config_error(keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signed = _sign(keys, keys.pinned, detach=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without gpg, as on a host that lacks gnupg
    with pytest.raises(ConfigError, match="cannot run gpg"):
        gpg.verify(signed, home=keys.trusted_home, fingerprints=(keys.pinned,))

