"""Property tests: the list and DN parsers end in a value or their own error on any input, and valid input
round-trips field by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from imagesync.errors import ListFormatError
from imagesync.sources.hepix import dn, dn_parse
from imagesync.sources.hepix import parse as hepix

FAST = settings(max_examples=250, deadline=None)

ENDORSER = {"hv:x509": {"hv:dn": "/DC=EU/DC=EGI/CN=appdb.egi.eu", "hv:ca": "/DC=ORG/CN=SEE-GRID CA 2013"}}
BASE_IMAGE = {
    "dc:identifier": "img",
    "hv:uri": "https://h.example/a.img",
    "sl:checksum:sha512": "0" * 128,
    "hv:size": "1",
    "hv:version": "1",
}
BASE_LIST = {
    "dc:identifier": "list",
    "dc:date:created": "2024-01-01T00:00:00Z",
    "dc:date:expires": "2499-12-31T22:00:00Z",
    "hv:endorser": ENDORSER,
    "hv:images": [{"hv:image": BASE_IMAGE}],
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_give_a_list_or_a_format_error(content: bytes) -> None:
    try:
        hepix.parse(content, source="fuzz")
    except ListFormatError as exc:
        assert exc.subject == "fuzz"
        assert exc.message.startswith("$")


@FAST
@given(
    st.sampled_from(["list", "image"]),
    st.sampled_from(sorted({*BASE_LIST, *BASE_IMAGE, "hv:ram_minimum", "dc:date:expires", "sl:osname"})),
    json_values,
)
def test_any_field_value_gives_a_list_or_a_format_error(where: str, key: str, value: object) -> None:
    image: dict[str, object] = dict(BASE_IMAGE)
    body: dict[str, Any] = {**BASE_LIST, "hv:images": [{"hv:image": image}]}
    (body if where == "list" else image)[key] = value
    try:
        hepix.parse(json.dumps({"hv:imagelist": body}).encode(), source="fuzz")
    except ListFormatError as exc:
        assert exc.message.startswith('$["hv:imagelist"]')


@FAST
@given(st.text(max_size=60) | st.text(alphabet='/+=\\,;"# CNOUDxX0123456789aBcé.\t', max_size=40))
def test_any_text_gives_a_dn_or_a_dn_error(text: str) -> None:
    try:
        parsed = dn.parse(text)
    except dn.DNError:
        return
    assert dn.parse(dn.render(parsed)) == parsed


moments = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2499, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)


@st.composite
def date_texts(draw: st.DrawFn) -> tuple[str, datetime]:
    moment = draw(moments)
    style = draw(st.sampled_from(["offset", "z", "naive"]))
    utc = moment.astimezone(UTC)
    if style == "z":
        return utc.replace(tzinfo=None).isoformat() + "Z", utc
    if style == "naive":
        return utc.replace(tzinfo=None).isoformat(), utc
    return moment.isoformat(), utc


non_blank = st.text(min_size=1, max_size=20).filter(str.strip)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True)
paths = st.from_regex(r"(/[A-Za-z0-9._~-]{0,8}){1,3}", fullmatch=True)


@st.composite
def images(draw: st.DrawFn) -> tuple[dict[str, object], dict[str, object]]:
    """A raw hv:image and the Image fields it must give."""
    digest = draw(st.binary(min_size=64, max_size=64)).hex()
    size = draw(st.integers(min_value=0, max_value=2**62))
    version = draw(non_blank | st.integers(min_value=0))
    scheme = draw(st.sampled_from(["http", "https"]))
    raw: dict[str, object] = {
        "dc:identifier": draw(non_blank),
        "hv:uri": f"{scheme}://{draw(hosts)}{draw(paths)}",
        "sl:checksum:sha512": digest.upper() if draw(st.booleans()) else digest,
        "hv:size": str(size) if draw(st.booleans()) else size,
        "hv:version": version,
        "dc:title": draw(st.none() | st.text(max_size=20)),
        "ad:user:fullname": draw(st.text(max_size=10)),
    }
    expected = {**raw, "sl:checksum:sha512": digest, "hv:size": size, "hv:version": str(version)}
    if draw(st.booleans()):
        text, moment = draw(date_texts())
        raw["dc:date:expires"] = text
        expected["dc:date:expires"] = moment
    return raw, expected


@FAST
@given(st.lists(images(), max_size=4, unique_by=lambda pair: pair[0]["dc:identifier"]), date_texts(), date_texts())
def test_valid_lists_round_trip(
    entries: list[tuple[dict[str, object], dict[str, object]]],
    created: tuple[str, datetime],
    expires: tuple[str, datetime],
) -> None:
    body = {**BASE_LIST, "dc:date:created": created[0], "dc:date:expires": expires[0]}
    body["hv:images"] = [{"hv:image": raw} for raw, _ in entries]
    lst = hepix.parse(json.dumps({"hv:imagelist": body}, indent=1).encode(), source="s")
    assert (lst.created, lst.expires) == (created[1], expires[1])
    assert lst.endorser_dn == ENDORSER["hv:x509"]["hv:dn"]
    assert len(lst.images) == len(entries)
    for image, (raw, expected) in zip(lst.images, entries, strict=True):
        assert image.identifier == expected["dc:identifier"]
        assert image.uri == expected["hv:uri"]
        assert image.sha512 == expected["sl:checksum:sha512"]
        assert image.size == expected["hv:size"]
        assert image.version == expected["hv:version"]
        assert image.title == expected["dc:title"]
        assert image.expires == expected.get("dc:date:expires")
        assert dict(image.attributes) == raw


ATTRIBUTE_OIDS = [oid for oid, short, _ in dn_parse._ATTRIBUTES if short not in ("C", "jurisdictionC")]
oids = st.sampled_from(ATTRIBUTE_OIDS) | st.from_regex(
    r"1\.3\.6\.1\.4\.1\.[1-9][0-9]{0,4}\.(0|[1-9][0-9]{0,2})", fullmatch=True
)
# The caller strips the whole DN, so a value may not end in whitespace other than a space (which render escapes).
values = st.text(min_size=1, max_size=12).filter(lambda v: not (v[-1].isspace() and v[-1] != " "))
rdns = st.lists(st.tuples(oids, values), min_size=1, max_size=3, unique_by=lambda pair: pair[0])


@FAST
@given(st.lists(rdns, min_size=1, max_size=5))
def test_rendered_names_parse_back(drawn: list[list[tuple[str, str]]]) -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(x509.ObjectIdentifier(o), v) for o, v in rdn])
            for rdn in drawn
        ]
    )
    text = dn.render(name)
    parsed = dn.parse(text)
    assert parsed.attributes == tuple((dn_parse._SHORT_BY_OID.get(o, o), v) for rdn in drawn for o, v in rdn)
    assert dn.render(parsed) == text
    assert dn.matches(text, name.rfc4514_string())
    assert dn.matches(" " + text + "\n", parsed)
