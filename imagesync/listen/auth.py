"""Whether a request to ``imagesync listen`` comes from someone who knows the secret.

Two proofs are taken, so every sender can give one: ``X-Imagesync-Signature: sha256=<hex>``, the HMAC-SHA256 of
the exact body under the secret (the scheme imagesync's own webhooks sign with; it also proves the body was not
changed), or ``Authorization: Bearer <secret>`` (or the bare secret), the static header docker-registry's
notification endpoints and Harbor's webhook policies can send but cannot compute. Comparisons take constant time.
A request that offers neither, or a wrong one, is refused before its body is parsed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from imagesync.notify.webhooks import SIGNATURE_HEADER, signature


def signed(headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` offer a signature (then only the body can tell). Raises nothing."""
    return any(name.lower() == SIGNATURE_HEADER.lower() for name in headers)


def authentic(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """True when ``headers`` (names in any case) prove knowledge of ``secret`` for ``body``. Raises nothing."""
    found = {name.lower(): value for name, value in headers.items()}
    signed = found.get(SIGNATURE_HEADER.lower())
    if signed is not None:
        return hmac.compare_digest(signed.strip().encode(), signature(secret, body).encode())
    given = found.get("authorization")
    if given is None:
        return False
    token = given.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return hmac.compare_digest(token.encode(), secret.encode())
