"""Fuzz S/MIME unwrap + verify with mutated real openssl samples of every publisher form.

Oracle: nothing but an ImagesyncError (with a one-line message) leaves ``smime.verify``; an accepted input
yields exactly one of the documents that was really signed, by signers that really signed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagesync.errors import ImagesyncError
from imagesync.sources.hepix import smime
from imagesync.sources.hepix.castore import CAStore
from tests.fuzz import campaign
from tests.fuzz.mutators import asn1_mutation, bytes_mutation
from tests.support import asn1tree
from tests.support.hostile import cms_of, replace_cms
from tests.support.samples import FORMS, TestPKI, list_for, openssl_sign

CASES = 12000
# cryptography warns about odd names and serial numbers in the mutated certificates; expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning",
                                        "ignore::cryptography.utils.CryptographyDeprecationWarning")
# A second document, signed by another signer (non-ASCII DN), so a mix-up of content and signature shows.
OTHER_FORMS = ("detached", "detached_binary", "opaque", "pem", "der", "ber_stream", "keyid", "noattr")


@dataclass(frozen=True)
class Corpus:
    samples: tuple[bytes, ...]
    signed_by: dict[bytes, frozenset[str]]  # verified content -> DNs that really signed it
    store: CAStore
    now: datetime


@pytest.fixture(scope="module")
def corpus(pki: TestPKI) -> Corpus:
    first = list_for(pki.valid)
    second = list_for(pki.utf8, identifier="0b6c3f4e-2d1a-4f5b-8c7d-9e0f1a2b3c4d")
    samples = [openssl_sign(form, first, pki=pki) for form in FORMS]
    samples += [openssl_sign(form, second, pki.utf8, pki=pki) for form in OTHER_FORMS]
    store = CAStore.load(pki.ca_dir, "if_present")
    now = datetime.now(UTC)
    signed_by: dict[bytes, set[str]] = {}
    for blob in samples:
        try:
            verified = smime.verify(blob, store, now=now)
        except ImagesyncError:
            continue  # sha1 and nocerts: refused as they are, still good material to mutate and splice
        signed_by.setdefault(verified.content, set()).update(s.dn for s in verified.signers)
    assert len(signed_by) >= 2
    return Corpus(tuple(samples), {k: frozenset(v) for k, v in signed_by.items()}, store, now)


def mutate(rng: random.Random, corpus: Corpus) -> tuple[bytes, str]:
    blob = rng.choice(corpus.samples)
    notes = []
    if rng.random() < 0.45:
        changed = asn1_mutation(rng, blob)
        if changed is not None:
            blob, note = changed
            notes.append(note)
    if not notes or rng.random() < 0.25:
        blob, note = bytes_mutation(rng, blob, corpus.samples)
        notes.append(note)
    return blob, "; ".join(notes)


def check(blob: bytes, corpus: Corpus) -> str:
    try:
        verified = smime.verify(blob, corpus.store, now=corpus.now)
    except ImagesyncError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"
        return type(exc).__name__ + ("/certificate" if "certificate" in message else "")
    signers = corpus.signed_by.get(verified.content)
    assert signers is not None, f"accepted content nobody signed: {verified.content[:80]!r}"
    assert {s.dn for s in verified.signers} <= signers, f"accepted with signers {verified.signers}"
    return "accepted"


def test_fuzz_smime_verify(corpus: Corpus, tmp_path: Path) -> None:
    # The samples are signed afresh by each session's test PKI: a saved input replays against its CA directory.
    context = f"replay a saved input with: imagesync verify INPUT --ca-dir {corpus.store.directory}"
    outcomes = campaign.run("smime", CASES, lambda rng: mutate(rng, corpus), lambda blob: check(blob, corpus),
                            save=campaign.save_bytes, out_dir=tmp_path, context=context)
    if campaign.replaying():
        return
    total = sum(outcomes.values())
    # The campaign must exercise what it claims: some inputs survive, most are refused, and the certificate
    # mutations reach the certificate checks.
    assert outcomes["accepted"] > 0
    assert total - outcomes["accepted"] > total // 2
    assert sum(n for label, n in outcomes.items() if label.endswith("/certificate")) > total // 100


def test_mutation_machinery_is_exact(corpus: Corpus) -> None:
    # Re-encoding an unchanged tree and putting it back must give the very same message, or every ASN.1
    # mutation would also damage something else and the campaign would test less than it claims.
    for blob in corpus.samples:
        der = cms_of(blob)
        assert asn1tree.encode(asn1tree.parse(der)) == der
        assert replace_cms(blob, der) == blob
