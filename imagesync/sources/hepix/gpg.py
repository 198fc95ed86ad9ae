"""GPG-signed lists (clearsigned, or detached with a separate signature) with pinned fingerprints.

gpg calls a signature "valid" for any key in the keyring, so the keyring is a dedicated GNUPGHOME and, on top,
the signing (primary) key must be one of the fingerprints pinned for the list. See SMIME-NOTES.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gnupg

from imagesync.errors import BadSignatureError, ConfigError, MalformedSignatureError, UntrustedSignerError, brief
from imagesync.model import Signer, VerifiedContent

_CLEARSIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"


def is_clearsigned(blob: bytes) -> bool:
    return blob.lstrip().startswith(_CLEARSIGNED)


def verify(blob: bytes, *, home: Path, fingerprints: tuple[str, ...],
           signature: bytes | None = None) -> VerifiedContent:
    """Verify a clearsigned ``blob``, or ``blob`` against the detached ``signature``.

    Raises ConfigError (no keyring), MalformedSignatureError, BadSignatureError, UntrustedSignerError.
    """
    if not home.is_dir():
        raise ConfigError(f"GPG home {home} does not exist", subject="trust.gpg_home",
                          hint="create it and import the publishers' keys")
    try:
        engine = gnupg.GPG(gnupghome=str(home))
    except (OSError, ValueError) as exc:
        # python-gnupg runs gpg once to learn its version: a missing or failing gpg surfaces here.
        raise ConfigError(f"cannot run gpg: {brief(exc)}", subject="trust.gpg_home",
                          hint="install gnupg (Debian: gnupg)") from None
    if is_clearsigned(blob):
        result = engine.decrypt(blob)
        content = bytes(result.data)
    elif signature is None:
        raise MalformedSignatureError("not a clearsigned GPG message and no detached signature given")
    else:
        result = _verify_detached(engine, blob, signature)
        content = blob
    return VerifiedContent(content=content, kind="gpg", signer=_accept(result, fingerprints),
                           signers=(_accept(result, fingerprints),))


def _verify_detached(engine: gnupg.GPG, blob: bytes, signature: bytes) -> gnupg.Verify:
    with tempfile.NamedTemporaryFile(prefix="imagesync-", suffix=".sig") as handle:
        handle.write(signature)
        handle.flush()
        return engine.verify_data(handle.name, blob)


def _accept(result: gnupg.Verify, fingerprints: tuple[str, ...]) -> Signer:
    status = str(getattr(result, "status", "") or "no signature found")
    if "no public key" in status:
        raise UntrustedSignerError(f"GPG signature by key {result.key_id}, which is not in the keyring")
    if "signature bad" in status:
        raise BadSignatureError("GPG signature does not match the content (tampered or wrong key)")
    if not getattr(result, "fingerprint", None):
        raise MalformedSignatureError(f"no valid GPG signature ({status})")
    if not result.valid:
        raise BadSignatureError(f"GPG signature is not valid ({status})")
    primary = str(result.pubkey_fingerprint or result.fingerprint).upper()
    if primary not in fingerprints and str(result.fingerprint).upper() not in fingerprints:
        raise UntrustedSignerError(f"GPG signature by key {primary}, which is not pinned for this list")
    return Signer(dn=str(result.username or ""), ca="", fingerprint=primary)
