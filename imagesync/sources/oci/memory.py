"""What a registry source remembers between runs: each followed tag's verified manifest digest and the image it
made, so that a no-op rerun asks the registry for tag lists and manifest digests (HEAD) only, and fetches no
manifest, signature or blob of an artifact whose digest is unchanged. Kept as the ``raw`` copy of the source's
row in the state's ``lists`` table. Pure."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from imagesync.model import Image, Signer


@dataclass(frozen=True)
class Seen:
    """One tag as it was accepted: its manifest digest, the image, and who signed it (None: ``signature: none``)."""

    image: Image
    signer: Signer | None


def dump(seen: dict[str, Seen], keys: str) -> bytes:
    """The memory as bytes; ``keys`` names the trusted keys it was verified with. Raises nothing."""
    data = {"version": 1, "keys": keys,
            "tags": {identifier: {"image": _image(item.image), "signer": asdict(item.signer) if item.signer else None}
                     for identifier, item in seen.items()}}
    return json.dumps(data, sort_keys=True).encode()


def load(raw: bytes | None, keys: str) -> dict[str, Seen]:
    """The memory, or nothing when it is missing, unreadable or was verified with other keys (a key taken out
    of the configuration must be able to refuse what it signed). Raises nothing."""
    try:
        data = json.loads(raw or b"null")
        if not isinstance(data, dict) or data.get("version") != 1 or data.get("keys") != keys:
            return {}
        return {identifier: Seen(Image(**entry["image"]), Signer(**entry["signer"]) if entry["signer"] else None)
                for identifier, entry in data["tags"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def _image(image: Image) -> dict[str, Any]:
    fields = asdict(image)
    fields["attributes"] = dict(image.attributes)
    fields["expires"] = None  # artifacts do not expire
    return fields
