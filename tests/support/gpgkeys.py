"""Signing keys for the GPG tests, made by the real gpg in a keyring of the test's own."""

from __future__ import annotations

import gnupg


def new_signing_key(engine: gnupg.GPG, email: str, name: str = "List Signer") -> str:
    """Generate an unprotected ed25519 signing key in ``engine``'s home; return its fingerprint."""
    spec = engine.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real=name,
                                name_email=email, no_protection=True, expire_date=0)
    key = engine.gen_key(spec)
    assert key.fingerprint, key.stderr
    return str(key.fingerprint)
