"""Moved to :mod:`imagesync.demo.cosign` (the demo signs with it too); kept as an alias for branches that still
import it from here. Import from imagesync.demo.cosign in new code."""

from imagesync.demo.cosign import (
    PrivateKey,
    SignatureManifest,
    new_private_key,
    payload_for,
    public_key_pem,
    sig_manifest,
    sign,
    signature_layer,
)

__all__ = ["PrivateKey", "SignatureManifest", "new_private_key", "payload_for", "public_key_pem", "sig_manifest",
           "sign", "signature_layer"]
