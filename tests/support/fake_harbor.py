"""A FAKE of a few Harbor v2.0 REST endpoints, in front of a REAL registry, for the OCI source's tests.

No Harbor can run here, so this serves exactly these endpoints the way goharbor/harbor's ``api/v2.0/swagger.yaml`` and
handlers describe them, and nothing else of Harbor (every other ``/api/...`` path answers 404 "not faked"):

* ``GET /api/v2.0/projects/{project_name}/repositories?page=&page_size=&q=&sort=`` — Repository objects (``name`` is
  ``project/repo``), newest first by default, ``X-Total-Count`` and a relative ``Link`` with ``rel="prev"`` /
  ``rel="next"`` as Harbor writes it; ``q`` supports ``name=v`` and ``name=~v``.
* ``GET /api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts?with_tag=&with_accessory=&q=...`` —
  Artifact objects with their tags, newest push first; ``q`` supports ``tags=v``, ``tags=~v``, ``tags=*``,
  ``tags=nil``. The repository name is decoded twice, as Harbor does (``a%252Fb`` is ``a/b``).
* Auth as Harbor does it: Basic credentials of a configured account (robot names like ``robot$imagesync``) make the
  caller that account; wrong or no credentials make the caller anonymous (Harbor does not refuse them). Anonymous
  callers read public projects; otherwise members and admins only. Refusals: 401 ``UNAUTHORIZED`` (anonymous),
  403 ``FORBIDDEN`` (an account without access, also for an unknown project), 404 ``NOT_FOUND`` (unknown project,
  admins only). Bodies are ``{"errors":[{"code":..,"message":..}]}``.
* Every ``/v2`` and ``/v2/...`` request (any method) is relayed to the upstream registry, bodies streamed both ways,
  headers untouched (Authorization, WWW-Authenticate, Range, Docker-Content-Digest, Link...) but for the host.

The artifacts listed come from the Python data given, not from the upstream registry: a test that pushes through
``/v2`` and also lists artifacts must declare them. Server on 127.0.0.1, TLS from the caller's context, free port.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.harbor_api import (
    ApiError,
    FakeArtifact,
    FakeProject,
    FakeRepository,
    Paging,
    artifact_json,
    keyword_filter,
    parse_query,
    repository_json,
)
from tests.support.relay import Upstream, UpstreamUnavailable, relay, request_body

__all__ = ["FakeArtifact", "FakeHarbor", "FakeProject", "FakeRepository", "Seen"]

_REPOS = re.compile(r"^/api/v2\.0/projects/([^/]+)/repositories$")
_ARTIFACTS = re.compile(r"^/api/v2\.0/projects/([^/]+)/repositories/([^/]+)/artifacts$")


@dataclass(frozen=True)
class Seen:
    """One request answered: ``user`` is the account it was served as (None: anonymous or relayed)."""

    method: str
    path: str
    status: int
    user: str | None


@dataclass(frozen=True)
class _Repo:
    id: int
    repo: FakeRepository
    artifacts: tuple[tuple[int, FakeArtifact], ...]


@dataclass(frozen=True)
class _Project:
    id: int
    project: FakeProject
    repos: tuple[_Repo, ...]


class FakeHarbor:
    """The fake; a context manager. ``url`` is ``https://127.0.0.1:<port>``, ``api_url`` that plus ``/api/v2.0``."""

    def __init__(self, *, tls: ssl.SSLContext, projects: Sequence[FakeProject] = (), upstream: str | None = None,
                 upstream_tls: ssl.SSLContext | None = None, accounts: Mapping[str, str] | None = None,
                 admins: frozenset[str] = frozenset()) -> None:
        """``accounts`` maps account names to passwords. Raises ValueError for a malformed ``upstream``."""
        self.upstream = Upstream.parse(upstream, upstream_tls) if upstream else None
        self.accounts = dict(accounts or {})
        self.admins = admins
        self.projects = _index(projects)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # The handshake is left to the handler thread, so one silent client cannot block accept().
        self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"https://{self.host}"
        self.api_url = f"{self.url}/api/v2.0"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-harbor", daemon=True)

    def __enter__(self) -> FakeHarbor:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def seen(self, path_regex: str) -> list[Seen]:
        """The requests whose path (with query) matches ``path_regex`` (re.search), in order."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [s for s in self.requests if pattern.search(s.path)]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _caller(self, authorization: str) -> str | None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return name if name in self.accounts and self.accounts[name] == password else None

    def _project(self, name: str, caller: str | None) -> _Project:
        """Raises ApiError 401/403/404 in the order Harbor checks: permission first, existence after."""
        found = next((p for p in self.projects if p.project.name == name), None)
        admin = caller is not None and caller in self.admins
        if found is not None and (admin or found.project.public or caller in found.project.members):
            return found
        if found is None and admin:
            raise ApiError(404, "NOT_FOUND", f"project {name} not found")
        if caller is None:
            raise ApiError(401, "UNAUTHORIZED", "unauthorized")
        raise ApiError(403, "FORBIDDEN", "forbidden")


def _index(projects: Sequence[FakeProject]) -> tuple[_Project, ...]:
    # Ids as a database would hand them out: in declaration order, unique across projects.
    repo_ids, art_ids = iter(range(1, 1_000_000)), iter(range(1, 1_000_000))
    return tuple(
        _Project(pid, p, tuple(_Repo(next(repo_ids), r, tuple((next(art_ids), a) for a in r.artifacts))
                               for r in p.repositories))
        for pid, p in enumerate(projects, start=1)
    )


def _sorted(items: Sequence[Any], sort: str, keys: Mapping[str, Callable[[Any], Any]],
            default: Sequence[str]) -> list[Any]:
    """Harbor's ``sort=k1,-k2``; keys it cannot sort on are skipped, and none left means the default order."""
    wanted = [s for s in filter(None, sort.split(",")) if s.lstrip("-") in keys] or list(default)
    ordered = list(items)
    for spec in reversed(wanted):  # stable sorts, least significant key first
        ordered.sort(key=keys[spec.lstrip("-")], reverse=spec.startswith("-"))
    return ordered


def _list_repositories(project: _Project, query: Mapping[str, str]) -> list[dict[str, object]]:
    match = keyword_filter(query.get("q", ""), {
        "name": lambda v, fuzzy: lambda r: (v in r.repo.name) if fuzzy else r.repo.name == v})
    keys: dict[str, Callable[[Any], Any]] = {
        "name": lambda r: r.repo.name, "creation_time": lambda r: r.repo.created, "id": lambda r: r.id,
        "update_time": lambda r: r.repo.updated or r.repo.created}
    chosen = _sorted([r for r in project.repos if match(r)], query.get("sort", ""), keys, ["-creation_time", "-id"])
    return [repository_json(project.id, project.project.name, r.id, r.repo) for r in chosen]


def _tags_term(value: str, fuzzy: bool) -> Callable[[Any], bool]:
    if fuzzy:
        return lambda a: any(value in t for t in a[1].tags)
    if value in ("*", "nil"):
        return lambda a: bool(a[1].tags) == (value == "*")
    return lambda a: value in a[1].tags


def _list_artifacts(project: _Project, repo: _Repo, query: Mapping[str, str]) -> list[dict[str, object]]:
    match = keyword_filter(query.get("q", ""), {"tags": _tags_term})
    keys: dict[str, Callable[[Any], Any]] = {"push_time": lambda a: a[1].push_time, "id": lambda a: a[0],
                                             "digest": lambda a: a[1].digest}
    chosen = _sorted([a for a in repo.artifacts if match(a)], query.get("sort", ""), keys, ["-push_time", "-id"])
    with_tag = query.get("with_tag", "true").lower() == "true"  # swagger: with_tag defaults to true
    with_accessory = query.get("with_accessory", "false").lower() == "true"
    name = f"{project.project.name}/{repo.repo.name}"
    return [artifact_json((project.id, repo.id, art_id), name, art, with_tag=with_tag, with_accessory=with_accessory)
            for art_id, art in chosen]


def _repository_name(segment: str) -> str:
    """Raises ApiError 404 when one decoding already yields a slash: Harbor's router would not match that path."""
    once = unquote(segment)
    if "/" in once:
        raise ApiError(404, "NOT_FOUND", "path not found: encode a slash in repository_name twice (a%252Fb)")
    return unquote(once)


def _handler_for(harbor: FakeHarbor) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = harbor

    return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHarbor
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may sit idle; keeps a stuck client from holding a thread forever

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def handle_one(self) -> None:
        path = urlsplit(self.path).path
        if path == "/v2" or path.startswith("/v2/"):
            self._relay()
            return
        caller = self.owner._caller(self.headers.get("Authorization", ""))
        try:
            status, payload, headers = self._api(path, caller)
        except ApiError as error:
            self._send(error.status, (json.dumps(error.body()) + "\n").encode(), "application/json; charset=utf-8", {})
            self.owner._record(Seen(self.command, self.path, error.status, caller))
            return
        self._send(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers)
        self.owner._record(Seen(self.command, self.path, status, caller))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_one

    def _api(self, path: str, caller: str | None) -> tuple[int, object, dict[str, str]]:
        """Raises ApiError for every refusal."""
        for _ in request_body(self):
            pass  # an API request's body is not used; it is read so the connection stays usable
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"fake Harbor: {self.command} {path} is not faked")
        raw_query = urlsplit(self.path).query
        query = dict(parse_query(raw_query))
        paging = Paging.parse(query)  # go-swagger validates parameters before any permission check
        if (found := _REPOS.match(path)) is not None:
            items = _list_repositories(self.owner._project(unquote(found.group(1)), caller), query)
        elif (found := _ARTIFACTS.match(path)) is not None:
            project = self.owner._project(unquote(found.group(1)), caller)
            name = _repository_name(found.group(2))
            repo = next((r for r in project.repos if r.repo.name == name), None)
            if repo is None:
                raise ApiError(404, "NOT_FOUND", f"repository {project.project.name}/{name} not found")
            items = _list_artifacts(project, repo, query)
        else:
            raise ApiError(404, "NOT_FOUND", f"fake Harbor: {path} is not faked")
        headers = {"X-Total-Count": str(len(items))}
        if link := paging.links(path, parse_query(raw_query), len(items)):
            headers["Link"] = link
        return 200, paging.cut(items), headers

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(self) -> None:
        upstream = self.owner.upstream
        if upstream is None:
            self._send(502, b'{"errors":[{"code":"UNKNOWN","message":"fake Harbor: no upstream registry"}]}\n',
                       "application/json; charset=utf-8", {})
            return
        try:
            status = relay(self, upstream, self.owner.url)
        except UpstreamUnavailable as exc:
            self.close_connection = True  # the request body may be half read
            message = json.dumps(f"fake Harbor: upstream registry failed: {exc}")
            self._send(502, f'{{"errors":[{{"code":"UNKNOWN","message":{message}}}]}}\n'.encode(),
                       "application/json; charset=utf-8", {})
            status = 502
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # half an answer is out: dropping the connection is all that is left
            status = 0
        self.owner._record(Seen(self.command, self.path, status, None))

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test output should show assertions, not an access log
