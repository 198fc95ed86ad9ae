"""imagesync.sources.hepix.parse: tables of valid, normalised and broken HEPiX image lists."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from imagesync.errors import ListExpiredError, ListFormatError, RollbackError
from imagesync.model import Image, ImageList
from imagesync.sources.hepix import parse as hepix

SHA = "ab" * 64
LIST = '$["hv:imagelist"]'
IMG0 = LIST + '["hv:images"][0]["hv:image"]'
IMG1 = LIST + '["hv:images"][1]["hv:image"]'

# Shaped like a VO-wide AppDB list: string sizes and RAM, a 2499 expiry, many extra keys.
APPDB: dict[str, Any] = {
    "hv:imagelist": {
        "ad:vo": "fedcloud.egi.eu",
        "dc:date:created": "2024-05-02T09:15:01Z",
        "dc:date:expires": "2499-12-31T22:00:00Z",
        "dc:description": "VO-wide image list for fedcloud.egi.eu",
        "dc:identifier": "7b2e0a56-6f1d-4c4e-9d2e-1c5b9a0e3f11",
        "dc:source": "https://appdb.egi.eu/",
        "dc:title": "fedcloud.egi.eu",
        "ad:swid": "1234",
        "hv:endorser": {
            "hv:x509": {
                "dc:creator": "EGI Applications Database",
                "hv:ca": "/DC=ORG/DC=SEE-GRID/CN=SEE-GRID CA 2013",
                "hv:dn": "/DC=EU/DC=EGI/C=NL/O=Hosts/O=EGI.eu/CN=appdb.egi.eu",
                "hv:email": "appdb-support@iasa.gr",
            }
        },
        "hv:uri": "https://vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list",
        "hv:version": "20240502091501",
        "hv:images": [
            {
                "hv:image": {
                    "ad:appid": "1017",
                    "ad:base_mpuri": "https://appdb.egi.eu/store/vm/image/0a0b0c0d-1111-2222-3333-444455556666:3579/",
                    "ad:group": "General group",
                    "ad:mpuri": "https://appdb.egi.eu/store/vm/image/0a0b0c0d-1111-2222-3333-444455556666:3579/",
                    "ad:user:fullname": "Jane Doe",
                    "ad:user:guid": "1a2b3c4d",
                    "ad:user:uri": "https://appdb.egi.eu/store/person/jane.doe",
                    "ad:vo": "fedcloud.egi.eu",
                    "dc:description": "EGI Ubuntu 22.04 image",
                    "dc:identifier": "0a0b0c0d-1111-2222-3333-444455556666",
                    "dc:title": "EGI Ubuntu 22.04",
                    "hv:core_maximum": "0",
                    "hv:core_minimum": "1",
                    "hv:format": "QCOW2",
                    "hv:hypervisor": "KVM",
                    "hv:ram_maximum": "0",
                    "hv:ram_minimum": "2048",
                    "hv:size": "2361393152",
                    "hv:uri": "https://cephrgw01.ifca.es:8080/swift/v1/egi_endorsed_vas/EGI_Ubuntu_22.04-2024.04.19.qcow2",
                    "hv:version": "2024.04.19",
                    "sl:arch": "x86_64",
                    "sl:checksum:sha512": SHA.upper(),
                    "sl:comments": "",
                    "sl:os": "Linux",
                    "sl:osname": "Ubuntu",
                    "sl:osversion": "22.04",
                }
            },
            {
                "hv:image": {
                    "dc:identifier": "b1",
                    "dc:title": "Tiny",
                    "hv:size": 1024,
                    "hv:uri": "http://192.0.2.10/tiny.raw",
                    "hv:version": 3,
                    "hv:ram_minimum": 512,
                    "sl:checksum:sha512": "cd" * 64,
                    "sl:os": "Linux",
                    "dc:date:expires": "2030-01-01T00:00:00+01:00",
                }
            },
        ],
    }
}


def _doc(**changes: Any) -> dict[str, Any]:
    """APPDB with changes: keys "list.<field>", "img0.<field>", "img1.<field>"; a value of ... deletes."""
    doc = copy.deepcopy(APPDB)
    body = doc["hv:imagelist"]
    targets = {"list": body, "img0": body["hv:images"][0]["hv:image"], "img1": body["hv:images"][1]["hv:image"]}
    for key, value in changes.items():
        where, field = key.split(".", 1)
        if value is ...:
            del targets[where][field]
        else:
            targets[where][field] = value
    return doc


def _bytes(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_appdb_like_list() -> None:
    lst = hepix.parse(_bytes(APPDB), source="fedcloud")
    assert lst.identifier == "7b2e0a56-6f1d-4c4e-9d2e-1c5b9a0e3f11"
    assert lst.title == "fedcloud.egi.eu"
    assert lst.vo == "fedcloud.egi.eu"
    assert lst.created == datetime(2024, 5, 2, 9, 15, 1, tzinfo=UTC)
    assert lst.expires == datetime(2499, 12, 31, 22, 0, 0, tzinfo=UTC)
    assert lst.endorser_dn == "/DC=EU/DC=EGI/C=NL/O=Hosts/O=EGI.eu/CN=appdb.egi.eu"
    assert lst.endorser_ca == "/DC=ORG/DC=SEE-GRID/CN=SEE-GRID CA 2013"
    assert lst.attributes["ad:swid"] == "1234"
    first, second = lst.images
    assert first == Image(
        identifier="0a0b0c0d-1111-2222-3333-444455556666",
        uri="https://cephrgw01.ifca.es:8080/swift/v1/egi_endorsed_vas/EGI_Ubuntu_22.04-2024.04.19.qcow2",
        sha512=SHA,
        size=2361393152,
        version="2024.04.19",
        title="EGI Ubuntu 22.04",
        description="EGI Ubuntu 22.04 image",
        arch="x86_64",
        os_name="Ubuntu",
        os_version="22.04",
        format="QCOW2",
        vo="fedcloud.egi.eu",
        ram_minimum=2048,
        core_minimum=1,
        mpuri="https://appdb.egi.eu/store/vm/image/0a0b0c0d-1111-2222-3333-444455556666:3579/",
        expires=None,
        attributes=APPDB["hv:imagelist"]["hv:images"][0]["hv:image"],
    )
    assert (second.size, second.version, second.ram_minimum, second.core_minimum) == (1024, "3", 512, None)
    assert (second.os_name, second.os_version, second.description, second.mpuri) == ("Linux", None, None, None)
    assert second.expires == datetime(2029, 12, 31, 23, 0, tzinfo=UTC)


def test_attributes_are_read_only_copies() -> None:
    doc = _doc()
    lst = hepix.parse(_bytes(doc), source="s")
    image = lst.images[0]
    assert dict(image.attributes) == doc["hv:imagelist"]["hv:images"][0]["hv:image"]
    with pytest.raises(TypeError):
        image.attributes["dc:title"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        lst.attributes["dc:title"] = "changed"  # type: ignore[index]
    lst.attributes["hv:images"][0]["hv:image"]["dc:title"] = "changed"  # type: ignore[index]
    assert image.attributes["dc:title"] == "EGI Ubuntu 22.04"
    assert json.loads(json.dumps(dict(image.attributes))) == dict(image.attributes)


@pytest.mark.parametrize(
    ("changes", "attr", "expected"),
    [
        ({"img0.hv:size": "0"}, "size", 0),
        ({"img0.hv:size": 7}, "size", 7),
        ({"img0.hv:size": "123456789012345678901234567890"}, "size", 123456789012345678901234567890),
        ({"img0.hv:version": 2}, "version", "2"),
        ({"img0.hv:version": 1.5}, "version", "1.5"),
        ({"img0.sl:checksum:sha512": "AbCdEf" + "0" * 122}, "sha512", "abcdef" + "0" * 122),
        ({"img0.hv:ram_minimum": ""}, "ram_minimum", None),
        ({"img0.hv:ram_minimum": None}, "ram_minimum", None),
        ({"img0.hv:ram_minimum": ...}, "ram_minimum", None),
        ({"img0.hv:core_minimum": 4}, "core_minimum", 4),
        ({"img0.sl:osname": ...}, "os_name", "Linux"),
        ({"img0.sl:osname": ..., "img0.sl:os": ...}, "os_name", None),
        ({"img0.sl:osversion": 7}, "os_version", "7"),
        ({"img0.dc:title": None}, "title", None),
        ({"img0.dc:date:expires": None}, "expires", None),
        ({"img0.dc:date:expires": ""}, "expires", None),
        ({"img0.dc:date:expires": "2031-02-03"}, "expires", datetime(2031, 2, 3, tzinfo=UTC)),
        ({"img0.hv:uri": "HTTPS://Example.org/a"}, "uri", "HTTPS://Example.org/a"),
        ({"img0.hv:uri": "http://[::1]:8080/a"}, "uri", "http://[::1]:8080/a"),
    ],
)
def test_image_normalisation(changes: dict[str, Any], attr: str, expected: object) -> None:
    image = hepix.parse(_bytes(_doc(**changes)), source="s").images[0]
    assert getattr(image, attr) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-06-05T10:02:32Z", datetime(2015, 6, 5, 10, 2, 32, tzinfo=UTC)),
        ("2015-06-05t10:02:32z", datetime(2015, 6, 5, 10, 2, 32, tzinfo=UTC)),
        ("2499-12-31T22:00:00Z", datetime(2499, 12, 31, 22, tzinfo=UTC)),
        ("2015-06-05T12:02:32+02:00", datetime(2015, 6, 5, 10, 2, 32, tzinfo=UTC)),
        ("2015-06-05T05:02:32-05:00", datetime(2015, 6, 5, 10, 2, 32, tzinfo=UTC)),
        ("2015-06-05T10:02:32.123456Z", datetime(2015, 6, 5, 10, 2, 32, 123456, tzinfo=UTC)),
        ("2015-06-05T10:02:32.5+00:00", datetime(2015, 6, 5, 10, 2, 32, 500000, tzinfo=UTC)),
        ("2015-06-05T10:02:32", datetime(2015, 6, 5, 10, 2, 32, tzinfo=UTC)),
        ("2015-06-05 10:02:32", datetime(2015, 6, 5, 10, 2, 32, tzinfo=UTC)),
    ],
)
def test_dates(text: str, expected: datetime) -> None:
    lst = hepix.parse(_bytes(_doc(**{"list.dc:date:created": text})), source="s")
    assert lst.created == expected
    assert lst.created.tzinfo is UTC


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbf" + _bytes(APPDB),
        b" \r\n\t" + _bytes(APPDB) + b"\n\n",
        b"\n\xef\xbb\xbf " + json.dumps(APPDB, indent=2).encode() + b"\n",
    ],
)
def test_bom_and_whitespace_tolerated(content: bytes) -> None:
    assert len(hepix.parse(content, source="s").images) == 2


def test_empty_image_list_is_valid() -> None:
    assert hepix.parse(_bytes(_doc(**{"list.hv:images": []})), source="s").images == ()


def _error(content: bytes) -> str:
    with pytest.raises(ListFormatError) as caught:
        hepix.parse(content, source="fedcloud")
    assert caught.value.subject == "fedcloud"
    return caught.value.message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe{}", "$: not UTF-8 (byte 0)"),
        (b"", "$: invalid JSON at line 1 column 1"),
        (b'{\n  "hv:imagelist": ', "$: invalid JSON at line 2 column 18"),
        (b'{"a": NaN}', "$: invalid JSON: NaN is not valid JSON"),
        (b'{"a": 1, "a": 2}', "$: invalid JSON: duplicate key 'a'"),
        (b"[]", "$: expected an object, got an array"),
        (b'"x"', "$: expected an object, got a string"),
        (b"{}", LIST + ": required field is missing"),
        (b'{"hv:imagelist": null}', LIST + ": expected an object, got null"),
        (b"[" * 100_000 + b"]" * 100_000, "$: JSON nested too deeply"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "$: JSON nested too deeply"),
        (b'{"x": 1' + b"0" * 5000 + b"}", "$: invalid JSON: "),
        (b'{"x": {"y": ["ok", "\\ud800"]}}', '$["x"]["y"][1]: string holds a lone UTF-16 surrogate'),
        (b'{"\\udfff": 1}', "$: string holds a lone UTF-16 surrogate"),
        (b'{"x": "\\ud83d\\ude00 a pair is text"}', LIST + ": required field is missing"),
        # Found by tests/fuzz: a lone surrogate parses to a str that SQLite, logs and Glance cannot encode.
        (b'{"hv:imagelist": {"dc:title": "\\ud800"}}', '$["hv:imagelist"]["dc:title"]: string holds a lone UTF-16'),
        (b'{"\\uDFFF": 1}', "$: string holds a lone UTF-16 surrogate"),
        (b'{"x": ["ok", "\\udbff\\u0041"]}', '$["x"][1]: string holds a lone UTF-16 surrogate'),
    ],
)
def test_document_errors(content: bytes, expected: str) -> None:
    assert _error(content).startswith(expected)


def test_escaped_surrogate_pair_is_one_character() -> None:
    document = copy.deepcopy(APPDB)
    document["hv:imagelist"]["dc:title"] = "\U0001f600"
    parsed = hepix.parse(json.dumps(document, ensure_ascii=True).encode(), source="x")
    assert parsed.title == "\U0001f600"


def _x509(**fields: Any) -> dict[str, Any]:
    base = {"hv:dn": "/DC=EU/CN=appdb.egi.eu", "hv:ca": "/DC=ORG/CN=CA"}
    return {"hv:x509": {**base, **fields}}


@pytest.mark.parametrize(
    ("changes", "path", "problem"),
    [
        ({"list.dc:identifier": ...}, LIST + '["dc:identifier"]', "required field is missing"),
        ({"list.dc:identifier": 5}, LIST + '["dc:identifier"]', "expected a non-empty string, got a number"),
        ({"list.dc:identifier": " "}, LIST + '["dc:identifier"]', "expected a non-empty string"),
        ({"list.dc:date:created": ...}, LIST + '["dc:date:created"]', "required field is missing"),
        ({"list.dc:date:created": "yesterday"}, LIST + '["dc:date:created"]', "expected an ISO 8601 date"),
        ({"list.dc:date:created": "2015-13-01T00:00:00Z"}, LIST + '["dc:date:created"]', "ISO 8601"),
        ({"list.dc:date:created": "0001-01-01T00:00:00+01:00"}, LIST + '["dc:date:created"]', "ISO 8601"),
        ({"list.dc:date:expires": 12}, LIST + '["dc:date:expires"]', "expected an ISO 8601 date string"),
        ({"list.dc:date:expires": None}, LIST + '["dc:date:expires"]', "got null"),
        ({"list.dc:title": ["x"]}, LIST + '["dc:title"]', "expected a string, got an array"),
        ({"list.ad:vo": True}, LIST + '["ad:vo"]', "expected a string, got a boolean"),
        ({"list.hv:endorser": ...}, LIST + '["hv:endorser"]', "required field is missing"),
        ({"list.hv:endorser": {}}, LIST + '["hv:endorser"]["hv:x509"]', "required field is missing"),
        ({"list.hv:endorser": {"hv:x509": []}}, LIST + '["hv:endorser"]["hv:x509"]', "expected an object"),
        ({"list.hv:endorser": _x509(**{"hv:dn": ""})}, LIST + '["hv:endorser"]["hv:x509"]["hv:dn"]', "non-empty"),
        ({"list.hv:endorser": _x509(**{"hv:ca": "no dn"})}, LIST + '["hv:endorser"]["hv:x509"]["hv:ca"]', "not a"),
        (
            {"list.hv:endorser": {"hv:x509": {"hv:dn": "/CN=x"}}},
            LIST + '["hv:endorser"]["hv:x509"]["hv:ca"]',
            "missing",
        ),
        ({"list.hv:images": ...}, LIST + '["hv:images"]', "required field is missing"),
        ({"list.hv:images": {}}, LIST + '["hv:images"]', "expected an array, got an object"),
        ({"list.hv:images": [1]}, LIST + '["hv:images"][0]', "expected an object, got a number"),
        ({"list.hv:images": [{}]}, LIST + '["hv:images"][0]["hv:image"]', "required field is missing"),
        ({"list.hv:images": [{"hv:image": "x"}]}, IMG0, "expected an object, got a string"),
        ({"img1.dc:identifier": ...}, IMG1 + '["dc:identifier"]', "required field is missing"),
        (
            {"img1.dc:identifier": APPDB["hv:imagelist"]["hv:images"][0]["hv:image"]["dc:identifier"]},
            IMG1 + '["dc:identifier"]',
            "duplicate image identifier '0a0b0c0d-1111-2222-3333-444455556666' (also at index 0)",
        ),
        ({"img0.hv:uri": ...}, IMG0 + '["hv:uri"]', "required field is missing"),
        ({"img0.hv:uri": "ftp://example.org/a"}, IMG0 + '["hv:uri"]', "expected an http or https URI"),
        ({"img0.hv:uri": "example.org/a"}, IMG0 + '["hv:uri"]', "expected an http or https URI"),
        ({"img0.hv:uri": "http:///a"}, IMG0 + '["hv:uri"]', "http URI has no host"),
        ({"img0.hv:uri": "https://[::1/a"}, IMG0 + '["hv:uri"]', "not a valid URI"),
        ({"img0.hv:uri": "https://h/a b"}, IMG0 + '["hv:uri"]', "whitespace or control characters"),
        # A file URI would read a file of this host: the list is refused as a whole, like any bad field.
        ({"img0.hv:uri": "file:///srv/images/a.qcow2"}, IMG0 + '["hv:uri"]',
         "file URIs are refused: list images must be served over http or https"),
        ({"img0.hv:uri": "FILE:///etc/shadow"}, IMG0 + '["hv:uri"]', "file URIs are refused"),
        ({"img0.hv:uri": "file:"}, IMG0 + '["hv:uri"]', "file URIs are refused"),
        ({"img1.sl:checksum:sha512": ...}, IMG1 + '["sl:checksum:sha512"]', "required field is missing"),
        ({"img1.sl:checksum:sha512": "ab" * 63}, IMG1 + '["sl:checksum:sha512"]', "expected 128 hex digits"),
        ({"img1.sl:checksum:sha512": "zz" * 64}, IMG1 + '["sl:checksum:sha512"]', "expected 128 hex digits"),
        ({"img1.sl:checksum:sha512": "ab" * 64 + "\n"}, IMG1 + '["sl:checksum:sha512"]', "expected 128 hex digits"),
        ({"img1.sl:checksum:sha512": 5}, IMG1 + '["sl:checksum:sha512"]', "expected 128 hex digits"),
        ({"img0.hv:size": ...}, IMG0 + '["hv:size"]', "required field is missing"),
        ({"img0.hv:size": -1}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": "-1"}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": "12a"}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": " 12"}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": "١٢"}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": ""}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": 1.5}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": True}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": None}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:size": "1" * 31}, IMG0 + '["hv:size"]', "expected a non-negative integer"),
        ({"img0.hv:version": ...}, IMG0 + '["hv:version"]', "required field is missing"),
        ({"img0.hv:version": ""}, IMG0 + '["hv:version"]', "expected a non-empty string, got a string"),
        ({"img0.hv:version": None}, IMG0 + '["hv:version"]', "expected a non-empty string, got null"),
        ({"img0.hv:version": False}, IMG0 + '["hv:version"]', "expected a non-empty string, got a boolean"),
        ({"img0.hv:ram_minimum": "2 GB"}, IMG0 + '["hv:ram_minimum"]', "expected a non-negative integer"),
        ({"img0.hv:core_minimum": -2}, IMG0 + '["hv:core_minimum"]', "expected a non-negative integer"),
        ({"img0.dc:title": {}}, IMG0 + '["dc:title"]', "expected a string, got an object"),
        ({"img0.dc:date:expires": "soon"}, IMG0 + '["dc:date:expires"]', "expected an ISO 8601 date"),
        ({"img0.dc:date:expires": 0}, IMG0 + '["dc:date:expires"]', "expected an ISO 8601 date string"),
    ],
)
def test_field_errors_name_the_json_path(changes: dict[str, Any], path: str, problem: str) -> None:
    message = _error(_bytes(_doc(**changes)))
    assert message.startswith(path + ": ")
    assert problem in message


def test_error_line_leads_with_the_source() -> None:
    with pytest.raises(ListFormatError) as caught:
        hepix.parse(_bytes(_doc(**{"img0.sl:checksum:sha512": "x"})), source="fedcloud")
    assert str(caught.value) == f'fedcloud: {IMG0}["sl:checksum:sha512"]: expected 128 hex digits'


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _list(created: datetime, expires: datetime) -> ImageList:
    doc = _doc(**{"list.dc:date:created": created.isoformat(), "list.dc:date:expires": expires.isoformat()})
    return hepix.parse(_bytes(doc), source="s")


def test_fresh_list_passes() -> None:
    lst = _list(NOW - timedelta(days=1), NOW + timedelta(seconds=1))
    hepix.check_freshness(lst, now=NOW, previous_created=None, source="s")
    hepix.check_freshness(lst, now=NOW, previous_created=lst.created, source="s")
    hepix.check_freshness(lst, now=NOW.replace(tzinfo=None), previous_created=lst.created - timedelta(1), source="s")


@pytest.mark.parametrize("expires", [NOW, NOW - timedelta(seconds=1), NOW.astimezone(timezone(timedelta(hours=5)))])
def test_expired_list(expires: datetime) -> None:
    lst = _list(NOW - timedelta(days=1), expires)
    with pytest.raises(ListExpiredError) as caught:
        hepix.check_freshness(lst, now=NOW, previous_created=None, source="fedcloud")
    assert caught.value.subject == "fedcloud"
    assert lst.expires.isoformat().replace("+00:00", "Z") in caught.value.message
    assert not isinstance(caught.value, RollbackError)


def test_rollback() -> None:
    lst = _list(datetime(2026, 1, 1, tzinfo=UTC), NOW + timedelta(days=1))
    previous = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(RollbackError) as caught:
        hepix.check_freshness(lst, now=NOW, previous_created=previous, source="fedcloud")
    assert "2026-01-01T00:00:00Z" in caught.value.message
    assert "2026-01-01T00:00:01Z" in caught.value.message
    assert not isinstance(caught.value, ListExpiredError)


def test_image_expiry() -> None:
    first, second = hepix.parse(_bytes(APPDB), source="s").images
    far = datetime(9999, 12, 31, tzinfo=UTC)
    assert not hepix.image_expired(first, far)
    assert second.expires is not None
    assert not hepix.image_expired(second, second.expires - timedelta(microseconds=1))
    assert hepix.image_expired(second, second.expires)
    assert hepix.image_expired(second, far)
