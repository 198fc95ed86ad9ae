"""The fake Harbor (tests/support/fake_harbor.py) answers as Harbor's API description says, over real HTTPS.

Its /v2 relay is checked against a tiny registry-shaped HTTP server defined here: the real registry fixture is not
merged yet, and what matters is that bytes and headers pass through untouched.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.fake_harbor import FakeArtifact, FakeHarbor, FakeProject, FakeRepository
from tests.support.tls import ServerPKI, client_context, make_server_pki, server_context

ROBOT, SECRET = "robot$imagesync", "s3cret"
REPOS = "/api/v2.0/projects/{}/repositories"
T0 = datetime.datetime(2025, 9, 4, 12, 0, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def tls() -> ServerPKI:
    return make_server_pki()


def _repos(count: int) -> tuple[FakeRepository, ...]:
    return tuple(FakeRepository(f"img{n}", created=T0 + datetime.timedelta(minutes=n)) for n in range(count))


def _harbor(tls: ServerPKI, **kwargs: Any) -> FakeHarbor:
    projects = (
        FakeProject("egi_vm_images", _repos(7), public=True),
        FakeProject("vo.example.eu", _repos(2), members=frozenset({ROBOT})),
    )
    settings: dict[str, Any] = {"projects": projects, "accounts": {ROBOT: SECRET, "other": "pw", "admin": "pw"},
                                "admins": frozenset({"admin"})}
    return FakeHarbor(tls=server_context(tls), **(settings | kwargs))


def _call(harbor: FakeHarbor, tls: ServerPKI, path: str, *, method: str = "GET", user: tuple[str, str] | None = None,
          headers: dict[str, str] | None = None, body: bytes | Iterator[bytes] | None = None) -> Answer:
    sent = dict(headers or {})
    if user is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
    connection = http.client.HTTPSConnection(harbor.host, context=client_context(tls), timeout=30)
    try:
        connection.request(method, path, body=body, headers=sent, encode_chunked=isinstance(body, Iterator))
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def test_pages_of_seven_repositories_by_three(tls: ServerPKI) -> None:
    with _harbor(tls) as harbor:
        first = _call(harbor, tls, REPOS.format("egi_vm_images") + "?page_size=3&page=1")
        second = _call(harbor, tls, REPOS.format("egi_vm_images") + "?page=2&page_size=3")
        third = _call(harbor, tls, REPOS.format("egi_vm_images") + "?page=3&page_size=3")
    base = REPOS.format("egi_vm_images")
    assert [a.status for a in (first, second, third)] == [200, 200, 200]
    assert [a.headers["X-Total-Count"] for a in (first, second, third)] == ["7", "7", "7"]
    assert first.headers["Link"] == f'<{base}?page=2&page_size=3>; rel="next"'
    assert second.headers["Link"] == (
        f'<{base}?page=1&page_size=3>; rel="prev" , <{base}?page=3&page_size=3>; rel="next"')
    assert third.headers["Link"] == f'<{base}?page=2&page_size=3>; rel="prev"'
    names = [r["name"] for a in (first, second, third) for r in a.json()]
    assert names == [f"egi_vm_images/img{n}" for n in (6, 5, 4, 3, 2, 1, 0)]  # newest first, as Harbor sorts
    assert first.json()[0] == {"artifact_count": 0, "creation_time": "2025-09-04T12:06:00.000Z", "id": 7,
                               "name": "egi_vm_images/img6", "project_id": 1, "pull_count": 0,
                               "update_time": "2025-09-04T12:06:00.000Z"}
    assert first.headers["Content-Type"] == "application/json"


def test_following_next_links_keeps_the_query_and_ends(tls: ServerPKI) -> None:
    path, names, pages = REPOS.format("egi_vm_images") + "?q=name%3D~img&sort=name&page_size=2", [], 0
    with _harbor(tls) as harbor:
        while path:
            answer = _call(harbor, tls, path)
            names += [r["name"].split("/")[1] for r in answer.json()]
            nexts = [part for part in answer.headers.get("Link", "").split(" , ") if part.endswith('rel="next"')]
            path = nexts[0].split(">")[0].lstrip("<") if nexts else ""
            pages += 1
    assert (pages, names) == (4, [f"img{n}" for n in range(7)])


def test_page_size_zero_is_everything_and_over_a_hundred_is_refused(tls: ServerPKI) -> None:
    with _harbor(tls) as harbor:
        everything = _call(harbor, tls, REPOS.format("egi_vm_images") + "?page_size=0")
        too_big = _call(harbor, tls, REPOS.format("egi_vm_images") + "?page_size=101")
    assert (len(everything.json()), everything.headers["Link"]) == (7, None)
    assert too_big.status == 422
    assert too_big.json()["errors"][0]["code"] == "UNPROCESSABLE_ENTITY"


def test_private_project_needs_a_member(tls: ServerPKI) -> None:
    path = REPOS.format("vo.example.eu")
    with _harbor(tls) as harbor:
        anonymous = _call(harbor, tls, path)
        wrong_password = _call(harbor, tls, path, user=(ROBOT, "nope"))
        stranger = _call(harbor, tls, path, user=("other", "pw"))
        robot = _call(harbor, tls, path, user=(ROBOT, SECRET))
        served_as = [s.user for s in harbor.seen("vo.example.eu")]
    assert anonymous.status == wrong_password.status == 401
    assert anonymous.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}
    assert anonymous.headers["Content-Type"] == "application/json; charset=utf-8"
    assert (stranger.status, stranger.json()["errors"][0]["code"]) == (403, "FORBIDDEN")
    assert (robot.status, [r["name"] for r in robot.json()]) == (200, ["vo.example.eu/img1", "vo.example.eu/img0"])
    assert served_as == [None, None, "other", ROBOT]  # a wrong password is served as anonymous, as Harbor does


def test_public_project_is_open_even_to_a_wrong_password(tls: ServerPKI) -> None:
    with _harbor(tls) as harbor:
        answer = _call(harbor, tls, REPOS.format("egi_vm_images"), user=(ROBOT, "nope"))
    assert answer.status == 200


def test_unknown_project_is_404_only_for_an_admin(tls: ServerPKI) -> None:
    path = REPOS.format("nope")
    with _harbor(tls) as harbor:
        statuses = [_call(harbor, tls, path, user=u).status for u in (None, (ROBOT, SECRET))]
        admin = _call(harbor, tls, path, user=("admin", "pw"))
    assert statuses == [401, 403]
    assert admin.status == 404
    assert admin.json() == {"errors": [{"code": "NOT_FOUND", "message": "project nope not found"}]}


def _egi_project() -> FakeProject:
    old = FakeArtifact("sha256:" + "a" * 64, ("24.04-2025-09-01-aaaaaaaa",), push_time=T0, size=10)
    new = FakeArtifact("sha256:" + "b" * 64, ("24.04-2025-10-07-bbbbbbbb", "24.04"),
                       push_time=T0 + datetime.timedelta(days=30), size=20,
                       annotations={"org.opencontainers.image.revision": "bbbbbbbb"})
    nested = FakeRepository("team/tool", (FakeArtifact("sha256:" + "c" * 64, ("1",)),))
    return FakeProject("egi_vm_images", (FakeRepository("ubuntu", (old, new)), nested), public=True)


def test_artifacts_with_tags_newest_first_and_filtered(tls: ServerPKI) -> None:
    base = "/api/v2.0/projects/egi_vm_images/repositories/{}/artifacts"
    with _harbor(tls, projects=(_egi_project(),)) as harbor:
        listed = _call(harbor, tls, base.format("ubuntu") + "?with_tag=true&with_accessory=true&page_size=50")
        floating = _call(harbor, tls, base.format("ubuntu") + "?q=tags%3D24.04")
        untagged = _call(harbor, tls, base.format("ubuntu") + "?with_tag=false")
        nested = _call(harbor, tls, base.format("team%252Ftool"))
        once = _call(harbor, tls, base.format("team%2Ftool"))
        missing = _call(harbor, tls, base.format("debian"))
    newest = listed.json()[0]
    assert [a["digest"][7] for a in listed.json()] == ["b", "a"]
    assert [t["name"] for t in newest["tags"]] == ["24.04-2025-10-07-bbbbbbbb", "24.04"]
    assert (newest["type"], newest["artifact_type"], newest["repository_name"]) == (
        "UNKNOWN", "application/vnd.unknown.artifact.v1", "egi_vm_images/ubuntu")
    assert newest["annotations"] == {"org.opencontainers.image.revision": "bbbbbbbb"}
    assert newest["accessories"] == [] and newest["push_time"] == "2025-10-04T12:00:00.000Z"
    assert [a["digest"][7] for a in floating.json()] == ["b"]
    assert untagged.json()[0]["tags"] is None
    assert nested.json()[0]["repository_name"] == "egi_vm_images/team/tool"
    assert (once.status, missing.status) == (404, 404)


# -- /v2 relay -----------------------------------------------------------------------------------------------------

BLOB = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32 + 7)  # a little over 5 MiB, not a round size
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
CHALLENGE = 'Bearer realm="https://auth.example/token",service="registry",scope="repository:p/r:pull"'


class _Registry(BaseHTTPRequestHandler):
    """Answers like a registry would, enough to see bytes and headers pass: /v2/ challenges, blobs stream."""

    protocol_version = "HTTP/1.1"
    hosts: list[str] = []  # noqa: RUF012 - shared record of the Host headers seen

    def do_GET(self) -> None:
        self.hosts.append(self.headers["Host"])
        if self.path == "/v2/" and self.headers.get("Authorization") != "Bearer T0KEN":
            self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": CHALLENGE})
        elif self.path == "/v2/":
            self._reply(200, b"{}", {"Docker-Distribution-API-Version": "registry/2.0"})
        elif self.path == f"/v2/p/r/blobs/{BLOB_DIGEST}" and "Range" in self.headers:
            start, end = (int(x) for x in self.headers["Range"].removeprefix("bytes=").split("-"))
            self._reply(206, BLOB[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(BLOB)}"})
        elif self.path == f"/v2/p/r/blobs/{BLOB_DIGEST}":
            self._stream_chunked()
        else:
            self._reply(404, b"{}", {})

    def do_PUT(self) -> None:  # a monolithic blob upload, sent chunked by the client
        digest, size = hashlib.sha256(), 0
        while (length := int(self.rfile.readline().strip(), 16)) > 0:
            piece = self.rfile.read(length)
            digest.update(piece)
            size += len(piece)
            self.rfile.readline()
        self.rfile.readline()
        location = f"http://{self.headers['Host']}/v2/p/r/blobs/sha256:{digest.hexdigest()}"
        self._reply(201, b"", {"Location": location, "Docker-Content-Digest": f"sha256:{digest.hexdigest()}",
                               "X-Size": str(size)})

    def _stream_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Docker-Content-Digest", BLOB_DIGEST)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(BLOB), 100_000):
            piece = BLOB[start:start + 100_000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Registry.hosts = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_v2_challenge_and_token_pass_through(tls: ServerPKI, registry: str) -> None:
    with _harbor(tls, upstream=registry) as harbor:
        challenged = _call(harbor, tls, "/v2/")
        admitted = _call(harbor, tls, "/v2/", headers={"Authorization": "Bearer T0KEN"})
    assert (challenged.status, challenged.headers["WWW-Authenticate"]) == (401, CHALLENGE)
    assert challenged.body == b'{"errors":[{"code":"UNAUTHORIZED"}]}'
    assert (admitted.status, admitted.headers["Docker-Distribution-API-Version"]) == (200, "registry/2.0")
    assert set(_Registry.hosts) == {registry.removeprefix("http://")}  # only the host is rewritten


def test_v2_streams_a_large_blob_and_a_range(tls: ServerPKI, registry: str) -> None:
    path = f"/v2/p/r/blobs/{BLOB_DIGEST}"
    with _harbor(tls, upstream=registry) as harbor:
        whole = _call(harbor, tls, path)
        part = _call(harbor, tls, path, headers={"Range": "bytes=1000-1999"})
        statuses = [s.status for s in harbor.seen("^/v2/p/r/blobs")]
    assert (whole.status, whole.headers["Docker-Content-Digest"], whole.body == BLOB) == (200, BLOB_DIGEST, True)
    assert (part.status, part.body) == (206, BLOB[1000:2000])
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(BLOB)}"
    assert statuses == [200, 206]


def test_v2_streams_a_chunked_upload_and_keeps_clients_on_the_front_host(tls: ServerPKI, registry: str) -> None:
    pieces = (BLOB[i:i + 300_000] for i in range(0, len(BLOB), 300_000))
    with _harbor(tls, upstream=registry) as harbor:
        answer = _call(harbor, tls, "/v2/p/r/blobs/uploads/x?digest=" + BLOB_DIGEST, method="PUT", body=pieces)
    assert (answer.status, answer.headers["Docker-Content-Digest"]) == (201, BLOB_DIGEST)
    assert answer.headers["X-Size"] == str(len(BLOB))
    assert answer.headers["Location"] == f"{harbor.url}/v2/p/r/blobs/{BLOB_DIGEST}"


def test_v2_without_a_reachable_upstream_is_a_502(tls: ServerPKI) -> None:
    with _harbor(tls, upstream="http://127.0.0.1:9") as harbor:
        answer = _call(harbor, tls, "/v2/")
    assert answer.status == 502
