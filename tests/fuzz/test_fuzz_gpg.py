"""Fuzz GPG verification (clearsigned and detached) with mutated messages made by the real gpg.

Every case runs gpg, so this campaign is small; the oracle is the one of the S/MIME campaign: only
ImagesyncErrors leave ``gpg.verify``, and what it accepts is exactly the document the pinned key signed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import gnupg
import pytest

from imagesync.errors import ImagesyncError
from imagesync.sources.hepix import gpg
from tests.fuzz import campaign
from tests.fuzz.mutators import bytes_mutation
from tests.support.gpgkeys import new_signing_key

CASES = 400
PINNED_DOC = b'{"hv:imagelist": {"dc:identifier": "gpg-fuzz", "dc:title": "signed by the pinned key"}}\n'
OTHER_DOC = b'{"hv:imagelist": {"dc:identifier": "gpg-fuzz", "dc:title": "signed by another key in the ring"}}\n'


@dataclass(frozen=True)
class Material:
    home: Path
    pinned: str
    clearsigned: tuple[bytes, ...]
    signature: bytes
    accepted: bytes  # what gpg.verify returns for the pinned clearsigned document


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    base = tmp_path_factory.mktemp("gpg-fuzz")
    signer_home, home = base / "signer", base / "trusted"
    signer_home.mkdir(mode=0o700)
    home.mkdir(mode=0o700)
    signer = gnupg.GPG(gnupghome=str(signer_home))
    pinned, other = new_signing_key(signer, "pinned@example.org"), new_signing_key(signer, "other@example.org")
    trusted = gnupg.GPG(gnupghome=str(home))
    for fingerprint in (pinned, other):
        assert trusted.import_keys(signer.export_keys(fingerprint)).count == 1
    signed = [bytes(signer.sign(PINNED_DOC, keyid=pinned, clearsign=True).data),
              bytes(signer.sign(OTHER_DOC, keyid=other, clearsign=True).data)]
    signature = bytes(signer.sign(PINNED_DOC, keyid=pinned, detach=True).data)
    accepted = gpg.verify(signed[0], home=home, fingerprints=(pinned,)).content
    return Material(home, pinned, tuple(signed), signature, accepted)


def mutate(rng: random.Random, material: Material) -> tuple[tuple[bytes, bytes | None], str]:
    if rng.random() < 0.6:
        blob, note = bytes_mutation(rng, rng.choice(material.clearsigned), material.clearsigned)
        return (blob, None), f"clearsigned: {note}"
    if rng.random() < 0.5:
        content, note = bytes_mutation(rng, PINNED_DOC, (PINNED_DOC, OTHER_DOC))
        return (content, material.signature), f"detached content: {note}"
    signature, note = bytes_mutation(rng, material.signature, (material.signature, *material.clearsigned))
    return (PINNED_DOC, signature), f"detached signature: {note}"


def check(case: tuple[bytes, bytes | None], material: Material) -> str:
    blob, signature = case
    try:
        verified = gpg.verify(blob, home=material.home, fingerprints=(material.pinned,), signature=signature)
    except ImagesyncError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return type(exc).__name__
    if signature is None:
        # A clearsigned signature covers the canonical text (RFC 4880 7.1): line ends and trailing blanks are free.
        same = _canonical(verified.content) == _canonical(material.accepted)
    else:
        same = verified.content == PINNED_DOC
    assert same, f"accepted other content: {verified.content[:80]!r}"
    return "accepted"


def _canonical(text: bytes) -> bytes:
    return b"\n".join(line.rstrip(b" \t\r") for line in text.split(b"\n"))


def save(case: tuple[bytes, bytes | None], path: Path) -> None:
    path.write_bytes(case[0])
    if case[1] is not None:
        path.with_suffix(".sig").write_bytes(case[1])


def test_fuzz_gpg_verify(material: Material, tmp_path: Path) -> None:
    outcomes = campaign.run("gpg", CASES, lambda rng: mutate(rng, material), lambda case: check(case, material),
                            save=save, out_dir=tmp_path, context=f"keyring {material.home}, pinned {material.pinned}")
    if campaign.replaying():
        return
    assert outcomes["accepted"] < sum(outcomes.values())
