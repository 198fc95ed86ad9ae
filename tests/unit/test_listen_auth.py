"""Proof of the listen secret: the HMAC of the body, or the secret itself as a bearer token
(imagesync.listen.auth)."""

from __future__ import annotations

import pytest

from imagesync.listen.auth import authentic
from imagesync.notify.webhooks import signature

SECRET = "0123456789abcdef0123456789abcdef"
BODY = b'{"source": "demo"}'


@pytest.mark.parametrize(("headers", "expected"), [
    ({"X-Imagesync-Signature": signature(SECRET, BODY)}, True),
    ({"x-imagesync-signature": signature(SECRET, BODY)}, True),
    ({"X-Imagesync-Signature": signature(SECRET, BODY + b" ")}, False),  # another body
    ({"X-Imagesync-Signature": signature("another secret of some length", BODY)}, False),
    # A wrong signature is not rescued by a right bearer token: the signature, when given, decides.
    ({"X-Imagesync-Signature": "sha256=00", "Authorization": f"Bearer {SECRET}"}, False),
    ({"Authorization": f"Bearer {SECRET}"}, True),
    ({"Authorization": f"bearer  {SECRET} "}, True),
    ({"Authorization": SECRET}, True),  # Harbor's webhook policy sends its auth header as written
    ({"Authorization": f"Bearer {SECRET[:-1]}"}, False),
    ({"Authorization": f"Basic {SECRET}"}, False),
    ({}, False),
])
def test_authentic(headers: dict[str, str], expected: bool) -> None:
    assert authentic(SECRET, headers, BODY) is expected
