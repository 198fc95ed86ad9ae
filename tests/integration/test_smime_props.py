"""Property: any byte string given to the unwrapper or the verifier ends in a result or an ImagesyncError."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.errors import ImagesyncError
from imagesync.sources.hepix import smime
from imagesync.sources.hepix.castore import CAStore
from imagesync.sources.hepix.mime import unwrap
from tests.support.samples import TestPKI, list_for, openssl_sign

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SAMPLE_FORMS = ["detached", "opaque", "der", "ber_stream", "pem", "keyid", "noattr", "crypto_embedded"]


@pytest.fixture(scope="module")
def samples(pki: TestPKI) -> list[bytes]:
    return [openssl_sign(form, list_for(pki.valid), pki=pki) for form in SAMPLE_FORMS]


@pytest.fixture(scope="module")
def ca_store(pki: TestPKI) -> CAStore:
    return CAStore.load(pki.ca_dir, "if_present")


def _attempt(blob: bytes, store: CAStore) -> None:
    try:
        smime.verify(blob, store, now=datetime.now(UTC))
    except ImagesyncError as exc:
        assert str(exc) and "\n" not in str(exc)


@FAST
@given(blob=st.binary(max_size=2048))
def test_random_bytes(blob: bytes, ca_store: CAStore) -> None:
    with contextlib.suppress(ImagesyncError):
        unwrap(blob)
    _attempt(blob, ca_store)


@FAST
@given(prefix=st.sampled_from([b"\x30\x80", b"\x30\x82\x01\x00", b"-----BEGIN PKCS7-----\n",
                               b"Content-Type: multipart/signed; boundary=x\n\n--x\n",
                               b"Content-Type: application/pkcs7-mime\n\n"]),
       tail=st.binary(max_size=512))
def test_plausible_prefixes(prefix: bytes, tail: bytes, ca_store: CAStore) -> None:
    _attempt(prefix + tail, ca_store)


@FAST
@given(data=st.data())
def test_mutated_real_samples(data: st.DataObject, samples: list[bytes], ca_store: CAStore) -> None:
    blob = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
        blob[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=1, max_value=len(blob)))
    _attempt(bytes(blob[:cut]), ca_store)
