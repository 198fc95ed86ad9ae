"""The pure parts of the OCI client: challenges, names, digests, tag lists and descriptors, as tables."""

from __future__ import annotations

import pytest

from imagesync.sources.oci import content
from imagesync.sources.oci.auth import Challenge, Credentials, parse_challenge
from imagesync.sources.oci.content import ContentError

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
     Challenge("bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                          "scope": "repository:a/b:pull,push"})),
    ('Basic realm="Registry Realm"', Challenge("basic", {"realm": "Registry Realm"})),
    ("bearer realm=https://h/t, service=s", Challenge("bearer", {"realm": "https://h/t", "service": "s"})),
    ('Bearer realm="a\\"b"', Challenge("bearer", {"realm": 'a"b'})),
    ('Bearer realm="https://h/t", Basic realm="x"', Challenge("bearer", {"realm": "https://h/t"})),
    ("Negotiate", Challenge("negotiate", {})),
    ("", None),
    (None, None),
    ("realm=x", None),
])
def test_parse_challenge(header: str | None, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


def test_credentials_hide_the_password() -> None:
    credentials = Credentials("alice", "Pa55-word-hidden")
    assert "Pa55-word-hidden" not in repr(credentials)
    assert credentials.basic_header() == "Basic YWxpY2U6UGE1NS13b3JkLWhpZGRlbg=="


@pytest.mark.parametrize(("check", "value", "ok"), [
    (content.check_repository, "library/alma-9", True),
    (content.check_repository, "a__b/c.d/e--f", True),
    (content.check_repository, "Upper", False),
    (content.check_repository, "a/../b", False),
    (content.check_repository, "a/", False),
    (content.check_tag, "v1.2-rc_3", True),
    (content.check_tag, ".hidden", False),
    (content.check_tag, "x" * 129, False),
    (content.check_digest, D, True),
    (content.check_digest, "sha256:" + "A" * 64, False),
    (content.check_digest, "md5:" + "a" * 32, False),
    (content.check_reference, D, True),
    (content.check_reference, "latest", True),
    (content.check_reference, "sha256:abc", False),
])
def test_name_checks(check: content.Check, value: str, ok: bool) -> None:
    if ok:
        assert check(value) == value
    else:
        with pytest.raises(ContentError):
            check(value)


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"name":"r","tags":["a","b"]}', ["a", "b"]),
    (b'{"name":"r","tags":null}', []),
    (b'{"name":"r"}', []),
    (b'{"tags":[1]}', None),
    (b'["a"]', None),
    (b"not json", None),
])
def test_parse_tags(raw: bytes, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(ContentError):
            content.parse_tags(raw)
    else:
        assert content.parse_tags(raw) == expected


@pytest.mark.parametrize(("item", "problem"), [
    ({"mediaType": "t", "digest": D, "size": 3}, None),
    ({"mediaType": "t", "digest": D, "size": True}, "no valid size"),
    ({"mediaType": "t", "digest": D, "size": -1}, "no valid size"),
    ({"mediaType": "t", "digest": "sha256:zz", "size": 1}, "invalid digest"),
    ({"digest": D, "size": 1}, "lacks mediaType"),
    ({"mediaType": "t", "digest": D, "size": 1, "annotations": {"k": 1}}, "malformed annotations"),
    ("nope", "not a JSON object"),
])
def test_parse_descriptor(item: object, problem: str | None) -> None:
    if problem is None:
        assert content.parse_descriptor(item) == content.Descriptor("t", D, 3)
    else:
        with pytest.raises(ContentError, match=problem):
            content.parse_descriptor(item)


def test_verify_digest_names_both_digests() -> None:
    good = content.digest_of(b"x")
    content.verify_digest(b"x", good, "blob")
    with pytest.raises(ContentError, match=f"expected {good}, got {content.digest_of(b'y')}"):
        content.verify_digest(b"y", good, "blob")
    content.verify_digest(b"x", content.digest_of(b"x", "sha512"), "blob")
