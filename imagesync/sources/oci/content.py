"""What a registry hands out, as frozen values, and the checks that make its bytes trustworthy: digests, names, caps.

Pure apart from reading a response body; no requests are made here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

# The distribution spec's grammar: path components of lower-case alphanumerics joined by separators; tags are
# at most 128 word characters, dots and dashes. Checked before they go into a URL path ("../", "?" and "#" never do).
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_CHUNK = 64 * 1024

Check = Callable[[str], str]


class ContentError(ValueError):
    """Bytes or names that fail a check; the message says which check, the caller adds where."""


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content (OCI descriptor): what it is, its digest and size, and what the pointer says of it."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as served, checked against its digest; ``data`` is its parsed JSON object."""

    digest: str
    media_type: str
    raw: bytes = field(repr=False)
    data: Mapping[str, Any] = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptors(self, key: str) -> list[Descriptor]:
        """The descriptors under ``key`` ("layers", "manifests"). Raises ContentError if any is malformed."""
        items = self.data.get(key) or []
        if not isinstance(items, list):
            raise ContentError(f"{key!r} is not a list")
        return [parse_descriptor(item) for item in items]


@dataclass(frozen=True)
class BlobRequest:
    """What a downloader needs to stream a blob: the URL and the headers (with the registry's Authorization)."""

    url: str
    headers: Mapping[str, str] = field(repr=False)
    digest: str
    size: int | None


def check_repository(name: str) -> str:
    """``name`` if it is a valid repository name. Raises ContentError."""
    if len(name) > 255 or not _REPOSITORY.fullmatch(name):
        raise ContentError(f"invalid repository name {name[:80]!r}")
    return name


def check_tag(tag: str) -> str:
    """``tag`` if it is a valid tag. Raises ContentError."""
    if not _TAG.fullmatch(tag):
        raise ContentError(f"invalid tag {tag[:80]!r}")
    return tag


def check_digest(digest: str) -> str:
    """``digest`` if it is a sha256 or sha512 digest in canonical form. Raises ContentError."""
    if not _DIGEST.fullmatch(digest):
        raise ContentError(f"invalid digest {digest[:80]!r}")
    return digest


def check_reference(reference: str) -> str:
    """A tag or a digest. Raises ContentError."""
    return check_digest(reference) if ":" in reference else check_tag(reference)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``algorithm:hex`` of ``data``. Raises ContentError for an algorithm other than sha256 and sha512."""
    if algorithm not in _ALGORITHMS:
        raise ContentError(f"unsupported digest algorithm {algorithm[:20]!r}")
    return f"{algorithm}:{_ALGORITHMS[algorithm](data).hexdigest()}"


def verify_digest(data: bytes, expected: str, what: str) -> None:
    """Raises ContentError unless ``data`` hashes to ``expected``."""
    actual = digest_of(data, check_digest(expected).partition(":")[0])
    if actual != expected:
        raise ContentError(f"{what} does not match its digest: expected {expected}, got {actual}")


def parse_manifest(raw: bytes, content_type: str | None, digest: str) -> Manifest:
    """Parse a manifest body already checked against ``digest``. Raises ContentError if it is no JSON object."""
    data = _json(raw, "manifest")
    if not isinstance(data, dict):
        raise ContentError("manifest is not a JSON object")
    declared = data.get("mediaType")
    header = (content_type or "").split(";", 1)[0].strip()
    media_type = declared if isinstance(declared, str) and declared else header
    if media_type not in MANIFEST_TYPES:
        raise ContentError(f"unsupported manifest media type {media_type[:80]!r}")
    return Manifest(digest, media_type, raw, data)


def parse_tags(raw: bytes) -> list[str]:
    """The ``tags`` of a tag list page (null for an empty repository). Raises ContentError if it is none."""
    data = _json(raw, "tag list")
    tags = data.get("tags") if isinstance(data, dict) else None
    if tags is None and isinstance(data, dict):
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ContentError("not a tag list")
    return tags


def parse_repositories(raw: bytes, project: str) -> list[str]:
    """The repository names of one page of Harbor's repositories listing, each checked and inside ``project``.
    Raises ContentError."""
    data = _json_list(raw, "repository list")
    names = [item.get("name") if isinstance(item, dict) else None for item in data]
    for name in names:
        # A name outside the project would let one Harbor project speak for another's images.
        if not isinstance(name, str) or not name.startswith(f"{project}/"):
            raise ContentError(f"repository {str(name)[:80]!r} is not in project {project}")
        check_repository(name)
    return [name for name in names if isinstance(name, str)]


def parse_artifact_tags(raw: bytes, project: str) -> dict[str, str]:
    """``{tag: digest}`` of one page of Harbor's artifacts listing (``with_tag=true``); untagged artifacts give
    nothing. Raises ContentError."""
    data = _json_list(raw, "artifact list")
    found: dict[str, str] = {}
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
            raise ContentError("artifact without a digest")
        digest = check_digest(item["digest"])
        for tag in item.get("tags") or []:
            name = tag.get("name") if isinstance(tag, dict) else None
            if not isinstance(name, str):
                raise ContentError(f"artifact {digest[:19]} has a tag without a name")
            found[check_tag(name)] = digest
    return found


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContentError(f"{what} is not JSON") from exc


def _json_list(raw: bytes, what: str) -> list[Any]:
    data = _json(raw, what)
    if not isinstance(data, list):
        raise ContentError(f"{what} is not a JSON list")
    return data


def parse_descriptor(item: object) -> Descriptor:
    """One descriptor from JSON. Raises ContentError if a required field is missing or of the wrong type."""
    if not isinstance(item, dict):
        raise ContentError("descriptor is not a JSON object")
    media_type, digest, size = item.get("mediaType"), item.get("digest"), item.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise ContentError("descriptor lacks mediaType or digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ContentError(f"descriptor {digest[:80]!r} has no valid size")
    artifact_type = item.get("artifactType")
    annotations = item.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise ContentError(f"descriptor {digest[:80]!r} has malformed annotations")
    return Descriptor(media_type, check_digest(digest), size,
                      artifact_type if isinstance(artifact_type, str) else None, dict(annotations))


def read_capped(response: requests.Response, cap: int) -> bytes:
    """The whole body, refusing more than ``cap`` bytes. Raises ContentError when larger, requests' exceptions
    when the connection fails."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ContentError(f"body of {declared} bytes exceeds the cap of {cap} bytes")
    body = bytearray()
    for chunk in response.iter_content(_CHUNK):
        body += chunk
        if len(body) > cap:
            raise ContentError(f"body exceeds the cap of {cap} bytes")
    return bytes(body)
