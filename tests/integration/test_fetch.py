"""imagesync.sources.hepix.fetch against the real ListServer over HTTPS on 127.0.0.1, with a throwaway CA in an
IGTF-like dir."""

from __future__ import annotations

import base64
import email.utils
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from imagesync.demo.server import Fault, ListServer
from imagesync.errors import FetchError
from imagesync.net.policy import FetchPolicy
from imagesync.sources.hepix.fetch import Fetched, Fetcher
from tests.support.tls import ServerPKI, make_server_pki, write_igtf_ca

TOKEN = "tok-9f8e7d6c5b4a-SECRET"
LIST = b'{"hv:imagelist": {"dc:identifier": "demo"}}\n'
PATH = "/store/vo/demo/image.list"
BASIC = "Basic " + base64.b64encode(f"{TOKEN}:x-oauth-basic".encode()).decode()


@pytest.fixture(scope="module")
def pki() -> ServerPKI:
    return make_server_pki()


@pytest.fixture(scope="module")
def other_pki() -> ServerPKI:
    return make_server_pki("some other CA")


@pytest.fixture(scope="module")
def ca_dir(pki: ServerPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certificates")
    write_igtf_ca(pki.ca_pem, directory)
    # An IGTF directory also holds files that are not certificates; they must not break loading.
    (directory / "deadbeef.signing_policy").write_text("access_id_CA X509 '/CN=x'\n")
    return directory


@pytest.fixture
def server(pki: ServerPKI) -> Iterator[ListServer]:
    with ListServer(pki.cert_pem, pki.key_pem) as srv:
        srv.put(PATH, LIST)
        yield srv


Make = Callable[..., Fetcher]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(ca_dir: Path, sleeps: list[float]) -> Iterator[Make]:
    made: list[Fetcher] = []

    def factory(**overrides: object) -> Fetcher:
        options: dict[str, object] = {"ca_dir": ca_dir, "retries": 2, "timeout": 5.0, **overrides}
        fetcher = Fetcher(FetchPolicy(**options), sleep=sleeps.append)  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield factory
    for fetcher in made:
        fetcher.close()


def fails(fetcher: Fetcher, url: str, **kwargs: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url, name="demo", **kwargs)
    assert info.value.subject == "demo"
    assert "\n" not in str(info.value)
    return info.value


# -- success paths -------------------------------------------------------------------------------------------
def test_ok_fetch_returns_content_and_validators(server: ListServer, make: Make) -> None:
    got = make().fetch(server.url(PATH), name="demo")
    assert got.content == LIST and not got.not_modified
    assert got.etag and got.etag.startswith('"') and got.last_modified
    assert server.hits(PATH) == 1


def test_etag_round_trip(server: ListServer, make: Make) -> None:
    fetcher = make()
    first = fetcher.fetch(server.url(PATH), name="demo")
    second = fetcher.fetch(server.url(PATH), name="demo", etag=first.etag)
    assert second == Fetched(None, True, first.etag, first.last_modified)
    assert server.last_headers(PATH)["If-None-Match"] == first.etag
    server.put(PATH, LIST + b" ")
    third = fetcher.fetch(server.url(PATH), name="demo", etag=first.etag)
    assert third.content == LIST + b" " and third.etag != first.etag


def test_last_modified_round_trip(server: ListServer, make: Make) -> None:
    fetcher = make()
    first = fetcher.fetch(server.url(PATH), name="demo")
    assert first.last_modified is not None
    second = fetcher.fetch(server.url(PATH), name="demo", last_modified=first.last_modified)
    assert second.not_modified and second.content is None
    seen = server.last_headers(PATH)
    assert seen["If-Modified-Since"] == first.last_modified and "If-None-Match" not in seen
    older = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert fetcher.fetch(server.url(PATH), name="demo", last_modified=older).content == LIST


def test_plain_http_server(make: Make) -> None:
    with ListServer(tls=False) as srv:
        srv.put("/x.list", b"plain")
        assert srv.url("/x.list").startswith("http://127.0.0.1:")
        assert make().fetch(srv.url("/x.list"), name="demo").content == b"plain"


# -- retries -------------------------------------------------------------------------------------------------
def test_500_then_ok_is_retried(server: ListServer, make: Make, sleeps: list[float]) -> None:
    server.inject(PATH, Fault.status(500))
    assert make(backoff=1.0).fetch(server.url(PATH), name="demo").content == LIST
    assert server.hits(PATH) == 2 and sleeps == [1.0]


def test_backoff_is_exponential(server: ListServer, make: Make, sleeps: list[float]) -> None:
    for _ in range(3):
        server.inject(PATH, Fault.status(502))
    assert make(retries=3, backoff=0.5).fetch(server.url(PATH), name="demo").content == LIST
    assert sleeps == [0.5, 1.0, 2.0]


def test_503_retry_after_seconds_is_honoured(server: ListServer, make: Make, sleeps: list[float]) -> None:
    server.inject(PATH, Fault.status(503, headers={"Retry-After": "7"}))
    assert make().fetch(server.url(PATH), name="demo").content == LIST
    assert sleeps == [7.0] and server.hits(PATH) == 2


def test_retry_after_http_date_and_cap(server: ListServer, make: Make, sleeps: list[float]) -> None:
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.inject(PATH, Fault.status(503, headers={"Retry-After": in_30s}))
    server.inject(PATH, Fault.status(503, headers={"Retry-After": "86400"}))
    assert make().fetch(server.url(PATH), name="demo").content == LIST
    assert 25 <= sleeps[0] <= 30 and sleeps[1] == 300.0


def test_429_is_retried(server: ListServer, make: Make, sleeps: list[float]) -> None:
    server.inject(PATH, Fault.status(429, headers={"Retry-After": "2"}))
    assert make().fetch(server.url(PATH), name="demo").content == LIST
    assert sleeps == [2.0] and server.hits(PATH) == 2


def test_500_forever_gives_up_after_retries(server: ListServer, make: Make, sleeps: list[float]) -> None:
    for _ in range(10):
        server.inject(PATH, Fault.status(500))
    error = fails(make(retries=2), server.url(PATH))
    assert server.hits(PATH) == 3 and len(sleeps) == 2
    assert str(error).startswith("demo: ") and "HTTP 500" in str(error) and "3 attempts" in str(error)


def test_reset_then_ok(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.reset())
    assert make().fetch(server.url(PATH), name="demo").content == LIST
    assert server.hits(PATH) == 2


def test_reset_forever_names_the_reset(server: ListServer, make: Make) -> None:
    for _ in range(3):
        server.inject(PATH, Fault.reset())
    assert "connection reset" in str(fails(make(retries=2), server.url(PATH)))


def test_stall_longer_than_read_timeout_fails(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.stall(3))
    started = time.monotonic()
    error = fails(make(timeout=0.5, retries=0), server.url(PATH))
    assert "stalled" in str(error) and time.monotonic() - started < 2.5


def test_stall_then_ok_is_retried(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.stall(3))
    assert make(timeout=0.5, retries=1).fetch(server.url(PATH), name="demo").content == LIST
    assert server.hits(PATH) == 2


def test_truncated_body_fails(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.truncate(10))
    error = fails(make(retries=0), server.url(PATH))
    assert "truncated" in str(error) and f"of {len(LIST)} bytes" in str(error)


def test_truncated_body_then_ok_is_retried(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.truncate(10))
    assert make(retries=1).fetch(server.url(PATH), name="demo").content == LIST


# -- no retry ------------------------------------------------------------------------------------------------
def test_404_is_not_retried(server: ListServer, make: Make, sleeps: list[float]) -> None:
    error = fails(make(), server.url("/missing.list"))
    assert "HTTP 404" in str(error) and "not found" in str(error)
    assert server.hits("/missing.list") == 1 and sleeps == []


@pytest.mark.parametrize(("code", "words"), [(403, "forbidden"), (418, "HTTP 418"), (410, "HTTP 410")])
def test_other_4xx_is_not_retried(server: ListServer, make: Make, code: int, words: str) -> None:
    server.inject(PATH, Fault.status(code))
    assert words in str(fails(make(), server.url(PATH)))
    assert server.hits(PATH) == 1


def test_401_without_token_says_token(server: ListServer, make: Make) -> None:
    server.require_token("/store/", TOKEN)
    error = fails(make(), server.url(PATH))
    assert "HTTP 401" in str(error) and "token" in str(error)
    assert error.hint is not None and "token" in error.hint
    assert server.hits(PATH) == 1 and "Authorization" not in server.last_headers(PATH)


def test_token_argument_is_sent_as_basic_auth(server: ListServer, make: Make) -> None:
    server.require_token("/store/", TOKEN)
    assert make().fetch(server.url(PATH), name="demo", token=TOKEN).content == LIST
    assert server.last_headers(PATH)["Authorization"] == BASIC


@pytest.mark.parametrize("userinfo", [f"{TOKEN}:x-oauth-basic", TOKEN])
def test_token_in_url_userinfo(server: ListServer, make: Make, userinfo: str) -> None:
    server.require_token("/store/", TOKEN)
    url = server.url(PATH).replace("https://", f"https://{userinfo}@")
    assert make().fetch(url, name="demo").content == LIST
    assert server.last_headers(PATH)["Authorization"] == BASIC
    assert server.requests_seen() == [("GET", PATH)]


# -- size cap ------------------------------------------------------------------------------------------------
def test_oversized_body_fails_naming_the_cap(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.oversize(10_000))
    error = fails(make(max_bytes=4096), server.url(PATH))
    assert "4096 bytes" in str(error) and server.hits(PATH) == 1


def test_body_growing_over_cap_fails_while_streaming(server: ListServer, make: Make) -> None:
    server.inject(PATH, Fault.oversize(512 * 1024 * 1024, declare_length=False))
    started = time.monotonic()
    error = fails(make(max_bytes=65536), server.url(PATH))
    assert "body exceeds the cap of 65536 bytes" in str(error)
    assert time.monotonic() - started < 5  # stopped early, did not drain half a gigabyte


def test_content_length_over_cap_fails_before_reading(server: ListServer, make: Make) -> None:
    # The body is empty: reading it would report truncation, so the message proves nothing was read.
    server.inject(PATH, Fault.status(200, headers={"Content-Length": "999999999"}))
    error = fails(make(max_bytes=1024), server.url(PATH))
    assert "Content-Length 999999999 exceeds the cap of 1024 bytes" in str(error)
    assert server.hits(PATH) == 1


# -- TLS trust -----------------------------------------------------------------------------------------------
def test_untrusted_server_ca_fails_with_tls_message(other_pki: ServerPKI, make: Make, sleeps: list[float]) -> None:
    with ListServer(other_pki.cert_pem, other_pki.key_pem) as srv:
        srv.put(PATH, LIST)
        error = fails(make(), srv.url(PATH))
        assert "TLS certificate of 127.0.0.1 not trusted (system store + ca_dir)" in str(error)
        assert srv.hits(PATH) == 0 and sleeps == []


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_env_bundle_does_not_replace_ca_dir(server: ListServer, make: Make, pki: ServerPKI, other_pki: ServerPKI,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    bundle = tmp_path / "other.pem"
    bundle.write_bytes(other_pki.ca_pem)
    monkeypatch.setenv(variable, str(bundle))
    assert make().fetch(server.url(PATH), name="demo").content == LIST
    # Control: a plain Session's own `verify` loses to the variable; this is what the adapter prevents.
    ca_file = tmp_path / "test-ca.pem"
    ca_file.write_bytes(pki.ca_pem)
    with requests.Session() as session:
        session.verify = str(ca_file)
        with pytest.raises(requests.exceptions.SSLError):
            session.get(server.url(PATH), timeout=5)


def test_env_bundle_is_honoured_as_addition(server: ListServer, make: Make, pki: ServerPKI, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    assert "not trusted" in str(fails(make(ca_dir=None), server.url(PATH)))
    bundle = tmp_path / "extra.pem"
    bundle.write_bytes(pki.ca_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert make(ca_dir=None).fetch(server.url(PATH), name="demo").content == LIST


def test_unreadable_ca_dir_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot read CA directory"):
        Fetcher(FetchPolicy(ca_dir=tmp_path / "nope"))


# -- network failures ----------------------------------------------------------------------------------------
def _invalid_fails_fast() -> bool:
    """Resolving a .invalid name fails locally on a sane resolver; some sandboxes hang on it instead."""
    done = threading.Event()

    def probe() -> None:
        try:
            socket.getaddrinfo("nonexistent.invalid", 443)
        except OSError:
            done.set()

    threading.Thread(target=probe, daemon=True).start()
    return done.wait(2.0)


needs_fast_dns = pytest.mark.skipif(not _invalid_fails_fast(), reason="resolving .invalid does not fail fast here")


@needs_fast_dns
def test_dns_failure(make: Make) -> None:
    error = fails(make(retries=1), "https://nonexistent.invalid/image.list")
    assert "cannot resolve host nonexistent.invalid" in str(error)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused(make: Make, sleeps: list[float]) -> None:
    error = fails(make(retries=1), f"https://127.0.0.1:{free_port()}/image.list")
    assert "connection refused" in str(error) and len(sleeps) == 1


# -- local files ---------------------------------------------------------------------------------------------
def test_file_url_and_plain_path(make: Make, tmp_path: Path) -> None:
    target = tmp_path / "my list.json"
    target.write_bytes(LIST)
    fetcher = make()
    assert fetcher.fetch(target.as_uri(), name="demo") == Fetched(LIST, False, None, None)
    assert fetcher.fetch(str(target), name="demo", etag='"x"').content == LIST


def test_missing_file_names_the_path(make: Make, tmp_path: Path) -> None:
    missing = tmp_path / "absent.list"
    assert str(missing) in str(fails(make(), str(missing)))
    assert str(missing) in str(fails(make(), missing.as_uri()))


def test_local_file_over_cap(make: Make, tmp_path: Path) -> None:
    big = tmp_path / "big.list"
    big.write_bytes(b"x" * 2048)
    assert "cap of 1024 bytes" in str(fails(make(max_bytes=1024), str(big)))


# -- secrets -------------------------------------------------------------------------------------------------
def _scenario(kind: str, server: ListServer, other_pki: ServerPKI) -> tuple[str, ListServer | None]:
    """Arrange one failure; return the URL to fetch and an extra server to stop afterwards."""
    if kind == "untrusted":
        extra = ListServer(other_pki.cert_pem, other_pki.key_pem).start()
        return extra.url(PATH), extra
    urls = {"dns": "https://nonexistent.invalid/x.list", "refused": f"https://127.0.0.1:{free_port()}/x.list",
            "404": server.url("/nothing")}
    if kind in urls:
        return urls[kind], None
    faults = {"500": Fault.status(500), "503": Fault.status(503, headers={"Retry-After": "1"}),
              "reset": Fault.reset(), "stall": Fault.stall(2), "truncate": Fault.truncate(5),
              "oversize": Fault.oversize(100_000),
              "length": Fault.status(200, headers={"Content-Length": "1000000000"}),
              "403": Fault.status(403)}
    if kind == "401":
        server.require_token("/", "a-different-token")
    else:
        for _ in range(3):
            server.inject(PATH, faults[kind])
    return server.url(PATH), None


FAILURES = [pytest.param("dns", marks=needs_fast_dns), "refused", "404", "401", "403", "500", "503", "reset",
            "stall", "truncate", "oversize", "length", "untrusted"]


@pytest.mark.parametrize("as_userinfo", [False, True], ids=["token-arg", "token-in-url"])
@pytest.mark.parametrize("kind", FAILURES)
def test_token_never_leaks(kind: str, as_userinfo: bool, server: ListServer, make: Make, other_pki: ServerPKI,
                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url, extra = _scenario(kind, server, other_pki)
    try:
        if as_userinfo:
            error = fails(make(retries=1, timeout=0.5, max_bytes=1024),
                          url.replace("https://", f"https://{TOKEN}:x-oauth-basic@"))
        else:
            error = fails(make(retries=1, timeout=0.5, max_bytes=1024), url, token=TOKEN)
    finally:
        if extra is not None:
            extra.stop()
    rendered = " ".join([str(error), repr(error), error.message, error.hint or "", caplog.text])
    assert TOKEN not in rendered
    assert "attempt=1" in caplog.text and "list=demo" in caplog.text


def test_server_stop_leaves_no_threads(pki: ServerPKI, make: Make) -> None:
    before = threading.active_count()
    srv = ListServer(pki.cert_pem, pki.key_pem).start()
    srv.put(PATH, LIST)
    fetcher = make()
    fetcher.fetch(srv.url(PATH), name="demo")  # leaves a keep-alive connection open on the server
    srv.inject(PATH, Fault.stall(30))
    with pytest.raises(FetchError):
        make(timeout=0.3, retries=0).fetch(srv.url(PATH), name="demo")
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    assert threading.active_count() == before


# -- the list server itself (ranges, files, auth) -----------------------------------------------------------------
@pytest.fixture
def plain() -> Iterator[ListServer]:
    with ListServer(tls=False) as srv:
        yield srv


def test_server_ranges(plain: ListServer) -> None:
    plain.put("/img", b"0123456789")
    with requests.Session() as http:
        part = http.get(plain.url("/img"), headers={"Range": "bytes=3-5"}, timeout=5)
        assert (part.status_code, part.content, part.headers["Content-Range"]) == (206, b"345", "bytes 3-5/10")
        tail = http.get(plain.url("/img"), headers={"Range": "bytes=7-"}, timeout=5)
        assert (tail.status_code, tail.content) == (206, b"789")
        beyond = http.get(plain.url("/img"), headers={"Range": "bytes=10-"}, timeout=5)
        assert (beyond.status_code, beyond.headers["Content-Range"]) == (416, "bytes */10")
        head = http.head(plain.url("/img"), timeout=5)
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "10", b"")
    assert plain.last_headers("/img").get("Range") is None and plain.hits("/img") == 4


def test_server_streams_files_with_ranges(plain: ListServer, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    payload = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    disk.write_bytes(payload)
    plain.put_file("/disk.raw", disk)
    with requests.Session() as http:
        whole = http.get(plain.url("/disk.raw"), timeout=5)
        assert whole.content == payload
        rest = http.get(plain.url("/disk.raw"), headers={"Range": "bytes=1048570-"}, timeout=5)
        assert rest.status_code == 206 and rest.content == payload[1048570:]
        again = http.get(plain.url("/disk.raw"), headers={"If-None-Match": whole.headers["ETag"]}, timeout=5)
        assert again.status_code == 304
        disk.write_bytes(payload[:100])
        changed = http.get(plain.url("/disk.raw"), headers={"If-None-Match": whole.headers["ETag"]}, timeout=5)
        assert changed.status_code == 200 and changed.content == payload[:100]
    plain.remove("/disk.raw")
    assert requests.get(plain.url("/disk.raw"), timeout=5).status_code == 404


def test_server_token_guard(plain: ListServer) -> None:
    plain.put("/private/x", b"secret list")
    plain.put("/public/x", b"public list")
    plain.require_token("/private/", TOKEN)
    denied = requests.get(plain.url("/private/x"), timeout=5)
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.get(plain.url("/private/x"), auth=("other-token", "x-oauth-basic"), timeout=5)
    assert wrong.status_code == 401
    ok = requests.get(plain.url("/private/x"), auth=(TOKEN, "x-oauth-basic"), timeout=5)
    assert ok.content == b"secret list"
    assert requests.get(plain.url("/public/x"), timeout=5).content == b"public list"
