"""The pure part of the fake Harbor: the data it serves, and paging, filtering and JSON as Harbor v2.0 does them.

Modelled on goharbor/harbor ``api/v2.0/swagger.yaml`` and its handlers (``src/server/v2.0/handler/base.go`` for
``Links``, ``src/lib/errors`` for the error body). See tests/support/fake_harbor.py for what is faked and what not.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NEVER = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)  # Harbor's pull_time of a never pulled artifact
MAX_PAGE_SIZE = 100  # swagger: page_size maximum
ORAS_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"  # what oras >= 1.1 writes without --artifact-type
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Harbor derives an artifact's "type" from a config media type of this form, else it says UNKNOWN.
_TYPE_FROM_MEDIA = re.compile(r"^application/vnd\.[^.]*\.(.*)\.config\.[^.]*\+json$")


@dataclass(frozen=True)
class FakeArtifact:
    """One manifest in a repository. ``annotations`` are the manifest's own (Harbor's ``annotations`` field)."""

    digest: str
    tags: tuple[str, ...] = ()
    push_time: datetime.datetime = EPOCH
    size: int = 0
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ORAS_ARTIFACT_TYPE
    media_type: str = OCI_EMPTY_CONFIG
    manifest_media_type: str = OCI_MANIFEST


@dataclass(frozen=True)
class FakeRepository:
    """A repository; ``name`` without the project (Harbor answers ``project/name``)."""

    name: str
    artifacts: tuple[FakeArtifact, ...] = ()
    pull_count: int = 0
    created: datetime.datetime = EPOCH
    updated: datetime.datetime | None = None


@dataclass(frozen=True)
class FakeProject:
    """A project; anyone may read a ``public`` one, else only ``members`` (account names) and admins."""

    name: str
    repositories: tuple[FakeRepository, ...] = ()
    public: bool = False
    members: frozenset[str] = frozenset()


class ApiError(Exception):
    """An answer in Harbor's error shape: ``{"errors":[{"code": code, "message": message}]}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, list[dict[str, str]]]:
        return {"errors": [{"code": self.code, "message": self.message}]}


def harbor_time(moment: datetime.datetime) -> str:
    """Time as go-openapi's strfmt.DateTime writes it: milliseconds and ``Z`` for UTC."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Paging:
    page: int
    size: int

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Paging:
        """Raises ApiError 422 as go-swagger's validation does for a non-integer or a page_size over 100."""
        values = []
        for name, default in (("page", 1), ("page_size", 10)):
            raw = query.get(name)
            try:
                values.append(default if raw is None else int(raw))
            except ValueError:
                raise ApiError(422, "UNPROCESSABLE_ENTITY", f'{name} in query must be of type int64: "{raw}"') from None
        if values[1] > MAX_PAGE_SIZE:
            message = f"page_size in query should be less than or equal to {MAX_PAGE_SIZE}"
            raise ApiError(422, "UNPROCESSABLE_ENTITY", message)
        return cls(values[0], values[1])

    def cut(self, items: Sequence[Any]) -> list[Any]:
        """The items of this page; page_size 0 (or less) means no paging at all, as in Harbor's orm."""
        if self.size <= 0:
            return list(items)
        start = self.size * (self.page - 1) if self.page > 0 else 0
        return list(items[start:start + self.size])

    def links(self, path: str, query: Sequence[tuple[str, str]], total: int) -> str:
        """The Link header value (possibly empty): relative URLs, keys sorted, query unescaped, joined by " , "."""
        if self.size == 0:
            return ""
        found = []
        if self.page > 1 and (self.page - 1) * self.size < total:
            found.append(f'<{_with_page(path, query, self.page - 1, self.size)}>; rel="prev"')
        if self.size * self.page < total:
            found.append(f'<{_with_page(path, query, self.page + 1, self.size)}>; rel="next"')
        return " , ".join(found)


def _with_page(path: str, query: Sequence[tuple[str, str]], page: int, size: int) -> str:
    # Go's url.Values.Encode sorts the keys; Harbor then unescapes the whole query again.
    kept = [(k, v) for k, v in query if k not in ("page", "page_size")]
    merged = sorted([*kept, ("page", str(page)), ("page_size", str(size))], key=lambda kv: kv[0])
    return f"{path}?{unquote_plus(urlencode(merged))}"


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


Term = Callable[[str, bool], Callable[[Any], bool]]  # (value, fuzzy) -> predicate


def keyword_filter(q: str, supported: Mapping[str, Term]) -> Callable[[Any], bool]:
    """Harbor's ``q=k=v,k=~v`` as a predicate. Raises ApiError 400 as Harbor does for a malformed ``q``, and also
    (unlike Harbor, which skips what it cannot filter on) for keys this fake does not implement, so that a client
    relying on one fails loudly instead of getting everything."""
    tests: list[Callable[[Any], bool]] = []
    for term in filter(None, unquote_plus(q).split(",")):
        key, _, value = term.partition("=")
        if not key or not value:
            raise ApiError(400, "BAD_REQUEST", 'the query string must contain "=" and the key/value cannot be empty')
        if key not in supported or value[0] in "[{(":
            raise ApiError(400, "BAD_REQUEST", f"fake Harbor: q term {term!r} is not implemented")
        fuzzy = value.startswith("~")
        tests.append(supported[key](value[1:] if fuzzy else value, fuzzy))
    return lambda item: all(test(item) for test in tests)


def repository_json(project_id: int, project: str, repo_id: int, repo: FakeRepository) -> dict[str, object]:
    """A Repository as Harbor sends it (go-swagger omits an empty description)."""
    return {
        "artifact_count": len(repo.artifacts),
        "creation_time": harbor_time(repo.created),
        "id": repo_id,
        "name": f"{project}/{repo.name}",
        "project_id": project_id,
        "pull_count": repo.pull_count,
        "update_time": harbor_time(repo.updated or repo.created),
    }


def artifact_json(ids: tuple[int, int, int], repo_name: str, art: FakeArtifact, *, with_tag: bool,
                  with_accessory: bool) -> dict[str, object]:
    """An Artifact as Harbor sends it; ``ids`` are (project, repository, artifact) ids."""
    project_id, repo_id, art_id = ids
    kind = _TYPE_FROM_MEDIA.match(art.media_type)
    return {
        "accessories": [] if with_accessory else None,
        "addition_links": {},
        "annotations": dict(art.annotations) or None,
        "artifact_type": art.artifact_type,
        "digest": art.digest,
        "extra_attrs": None,  # Harbor parses the config only for typed artifacts; oras artifacts are UNKNOWN
        "icon": "",
        "id": art_id,
        "labels": None,
        "manifest_media_type": art.manifest_media_type,
        "media_type": art.media_type,
        "project_id": project_id,
        "pull_time": harbor_time(NEVER),
        "push_time": harbor_time(art.push_time),
        "references": None,
        "repository_id": repo_id,
        "repository_name": repo_name,
        "size": art.size,
        "tags": [_tag_json(repo_id, art_id, n, art) for n in range(len(art.tags))] if with_tag and art.tags else None,
        "type": kind.group(1).upper() if kind else "UNKNOWN",
    }


def _tag_json(repo_id: int, art_id: int, index: int, art: FakeArtifact) -> dict[str, object]:
    return {"artifact_id": art_id, "id": art_id * 100 + index, "immutable": False, "name": art.tags[index],
            "pull_time": harbor_time(NEVER), "push_time": harbor_time(art.push_time), "repository_id": repo_id}
