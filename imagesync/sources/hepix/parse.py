"""HEPiX image list JSON -> ImageList (DESIGN §4). Pure: bytes and ``now`` in, values or errors out.

Every problem is a ListFormatError whose message starts with the JSON path of the bad field, e.g.
``$["hv:imagelist"]["hv:images"][3]["hv:image"]["sl:checksum:sha512"]: expected 128 hex digits``, so an operator
can find it in a list of hundreds of images.
"""

from __future__ import annotations

import copy
import json
import re
import types
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from imagesync.errors import ListExpiredError, ListFormatError, RollbackError
from imagesync.model import Image, ImageList
from imagesync.sources.hepix import dn

_BOM = b"\xef\xbb\xbf"
_SHA512 = re.compile(r"[0-9A-Fa-f]{128}\Z")
# Bounded so int() never meets Python's digit limit; 30 digits is far beyond any disk.
_DIGITS = re.compile(r"[0-9]{1,30}\Z")
_BAD_URI_CHARS = re.compile(r"[\x00-\x20\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Only a \u escape can bring a surrogate into the parsed strings (the bytes themselves are strict UTF-8).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

Json = Mapping[str, object]


class _Failure(Exception):
    """Internal: a problem at a JSON path; parse() turns it into a ListFormatError."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def _child(path: str, key: str | int) -> str:
    return f"{path}[{json.dumps(key)}]"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        # Two values for one key would let two readers of the same list see different images.
        if key in result:
            raise ValueError(f"duplicate key {key!r} in an object")
        result[key] = value
    return result


def _load(content: bytes) -> object:
    data = content.strip()
    data = data.removeprefix(_BOM).strip()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Failure("$", f"not UTF-8 (byte {exc.start})") from exc
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _Failure("$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except ValueError as exc:
        raise _Failure("$", f"invalid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(text):  # the walk is only worth it when an escape could hide one
        _text_only(document, "$")
    return document


def _text_only(value: object, path: str) -> None:
    """Refuse lone surrogates (``"\\ud800"``): valid JSON escapes, but not text, so no database, log or report
    could store or print them. Keys and values, at any depth."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise _Failure(path, "string holds a lone UTF-16 surrogate (not valid Unicode text)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _text_only(key, path)
            _text_only(item, _child(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _text_only(item, _child(path, index))


def _field(obj: Json, path: str, key: str) -> object:
    if key not in obj:
        raise _Failure(_child(path, key), "required field is missing")
    return obj[key]


def _object(value: object, path: str) -> Json:
    if not isinstance(value, dict):
        raise _Failure(path, f"expected an object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _text(obj: Json, path: str, key: str) -> str:
    value = _field(obj, path, key)
    if not isinstance(value, str) or not value.strip():
        raise _Failure(_child(path, key), f"expected a non-empty string, got {_kind(value)}")
    return value


def _optional_text(obj: Json, path: str, key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # publishers write e.g. sl:osversion as a number
    raise _Failure(_child(path, key), f"expected a string, got {_kind(value)}")


def _integer(value: object, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    raise _Failure(path, f"expected a non-negative integer or a string of digits, got {value!r:.40}")


def _optional_integer(obj: Json, path: str, key: str) -> int | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _integer(value, _child(path, key))


def _date(value: object, path: str) -> datetime:
    if not isinstance(value, str):
        raise _Failure(path, f"expected an ISO 8601 date string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip().upper())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _Failure(path, f"expected an ISO 8601 date like 2015-06-05T10:02:32Z, got {value!r:.40}") from exc


def _optional_date(obj: Json, path: str, key: str) -> datetime | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _date(value, _child(path, key))


def _uri(obj: Json, path: str) -> str:
    value = _text(obj, path, "hv:uri")
    where = _child(path, "hv:uri")
    if _BAD_URI_CHARS.search(value):
        raise _Failure(where, "URI contains whitespace or control characters")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise _Failure(where, f"not a valid URI: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "file":
        # Downloading it would copy a file of this host (a secret, a device) into a target: never from a list.
        raise _Failure(where, "file URIs are refused: list images must be served over http or https")
    if scheme not in ("http", "https"):
        raise _Failure(where, "expected an http or https URI")
    if not parts.hostname:
        raise _Failure(where, f"{scheme} URI has no host")
    return value


def _sha512(obj: Json, path: str) -> str:
    value = _field(obj, path, "sl:checksum:sha512")
    if not isinstance(value, str) or not _SHA512.match(value):
        raise _Failure(_child(path, "sl:checksum:sha512"), "expected 128 hex digits")
    return value.lower()


def _version(obj: Json, path: str) -> str:
    value = _field(obj, path, "hv:version")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _text(obj, path, "hv:version")


def _image(entry: object, path: str) -> Image:
    raw = _object(_field(_object(entry, path), path, "hv:image"), _child(path, "hv:image"))
    where = _child(path, "hv:image")
    return Image(
        identifier=_text(raw, where, "dc:identifier"),
        uri=_uri(raw, where),
        sha512=_sha512(raw, where),
        size=_integer(_field(raw, where, "hv:size"), _child(where, "hv:size")),
        version=_version(raw, where),
        title=_optional_text(raw, where, "dc:title"),
        description=_optional_text(raw, where, "dc:description"),
        arch=_optional_text(raw, where, "sl:arch"),
        os_name=_optional_text(raw, where, "sl:osname") or _optional_text(raw, where, "sl:os"),
        os_version=_optional_text(raw, where, "sl:osversion"),
        format=_optional_text(raw, where, "hv:format"),
        vo=_optional_text(raw, where, "ad:vo"),
        ram_minimum=_optional_integer(raw, where, "hv:ram_minimum"),
        core_minimum=_optional_integer(raw, where, "hv:core_minimum"),
        mpuri=_optional_text(raw, where, "ad:mpuri"),
        expires=_optional_date(raw, where, "dc:date:expires"),
        attributes=types.MappingProxyType(copy.deepcopy(dict(raw))),
    )


def _images(body: Json, path: str) -> tuple[Image, ...]:
    where = _child(path, "hv:images")
    entries = _field(body, path, "hv:images")
    if not isinstance(entries, list):
        raise _Failure(where, f"expected an array, got {_kind(entries)}")
    images: list[Image] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        image = _image(entry, _child(where, index))
        if image.identifier in seen:
            raise _Failure(
                _child(_child(_child(where, index), "hv:image"), "dc:identifier"),
                f"duplicate image identifier {image.identifier!r} (also at index {seen[image.identifier]})",
            )
        seen[image.identifier] = index
        images.append(image)
    return tuple(images)


def _endorser_dn(x509: Json, path: str, key: str) -> str:
    value = _text(x509, path, key)
    try:
        dn.parse(value)
    except dn.DNError as exc:
        raise _Failure(_child(path, key), exc.message) from exc
    return value


def _image_list(document: object) -> ImageList:
    path = _child("$", "hv:imagelist")
    body = _object(_field(_object(document, "$"), "$", "hv:imagelist"), path)
    endorser_path = _child(path, "hv:endorser")
    endorser = _object(_field(body, path, "hv:endorser"), endorser_path)
    x509_path = _child(endorser_path, "hv:x509")
    x509 = _object(_field(endorser, endorser_path, "hv:x509"), x509_path)
    return ImageList(
        identifier=_text(body, path, "dc:identifier"),
        title=_optional_text(body, path, "dc:title"),
        created=_date(_field(body, path, "dc:date:created"), _child(path, "dc:date:created")),
        expires=_date(_field(body, path, "dc:date:expires"), _child(path, "dc:date:expires")),
        endorser_dn=_endorser_dn(x509, x509_path, "hv:dn"),
        endorser_ca=_endorser_dn(x509, x509_path, "hv:ca"),
        vo=_optional_text(body, path, "ad:vo"),
        images=_images(body, path),
        attributes=types.MappingProxyType(copy.deepcopy(dict(body))),
    )


def parse(content: bytes, *, source: str) -> ImageList:
    """Parse the (already verified) bytes of a HEPiX image list.

    Raises ListFormatError with ``subject=source`` and the JSON path of the first bad field; never anything else.
    """
    try:
        return _image_list(_load(content))
    except _Failure as exc:
        raise ListFormatError(str(exc), subject=source) from None
    except RecursionError:
        raise ListFormatError("$: JSON nested too deeply", subject=source) from None


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    # A naive datetime is taken as UTC, like naive dates in lists, so comparisons never raise TypeError.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_freshness(lst: ImageList, *, now: datetime, previous_created: datetime | None, source: str) -> None:
    """Refuse a list that has expired or is older than the copy accepted before.

    Raises ListExpiredError if ``lst.expires <= now``; RollbackError if ``lst.created < previous_created``.
    """
    # Rollback first: a replayed old list that has also expired must stay 'unknown', never retire anything.
    if previous_created is not None and _utc(lst.created) < _utc(previous_created):
        raise RollbackError(
            f"list {lst.identifier} was created {_iso(lst.created)}, before the copy accepted earlier "
            f"(created {_iso(previous_created)})",
            subject=source,
            hint="an old list is being replayed; check the server",
        )
    if _utc(lst.expires) <= _utc(now):
        raise ListExpiredError(
            f"list {lst.identifier} expired at {_iso(lst.expires)} (now {_iso(now)})",
            subject=source,
            hint="the publisher has to re-sign the list",
        )


def image_expired(image: Image, now: datetime) -> bool:
    """True if the image has its own expiry date and it has passed. Raises nothing."""
    return image.expires is not None and _utc(image.expires) <= _utc(now)
