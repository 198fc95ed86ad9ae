"""Where the real cosign signatures live and how to read them (see the README.md beside the data).

They come from containers/image's test fixtures and are not committed here: the tests find them at
``$IMAGESYNC_COSIGN_FIXTURES`` or ``<checkout>/../shared/cosign-fixtures`` and skip when neither exists.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from imagesync.sources.oci.cosign import SignatureLayer

# containers/image's dir: transport stores a sigstore signature as this line, then the JSON.
_DIR_PREFIX = b"\x00sigstore-json\n"


def fixtures_dir() -> Path | None:
    """The real cosign data directory, or None when this machine does not have it."""
    configured = os.environ.get("IMAGESYNC_COSIGN_FIXTURES")
    checkout = Path(__file__).resolve().parents[2]
    candidate = Path(configured) if configured else checkout.parent / "shared" / "cosign-fixtures"
    return candidate if (candidate / "cosign.pub").is_file() else None


def read_signature(path: Path) -> SignatureLayer:
    """One containers/image ``signature-N`` file as the layer the registry client would have fetched.

    Raises ValueError if the file is not a sigstore signature in that format.
    """
    raw = path.read_bytes()
    if not raw.startswith(_DIR_PREFIX):
        raise ValueError(f"{path} is not a containers/image sigstore signature")
    document = json.loads(raw[len(_DIR_PREFIX):])
    return SignatureLayer(payload=base64.b64decode(document["payload"]),
                          annotations=dict(document["annotations"]), media_type=document["mimeType"])
