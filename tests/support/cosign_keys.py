"""Configured cosign keys for the verifier tests: public halves written as ``cosign.pub`` files and loaded."""

from __future__ import annotations

from pathlib import Path

from imagesync.demo.cosign import PrivateKey, public_key_pem
from imagesync.sources.oci import cosign
from imagesync.sources.oci.cosign import CosignPublicKey

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


def keys_for(tmp_path: Path, *private: PrivateKey) -> tuple[CosignPublicKey, ...]:
    """The verifier's keys for ``private`` keys, as if each public half were listed in ``cosign_keys``."""
    paths = []
    for number, key in enumerate(private):
        path = tmp_path / f"key{number}.pub"
        path.write_bytes(public_key_pem(key))
        paths.append(path)
    return cosign.load_public_keys(paths)
