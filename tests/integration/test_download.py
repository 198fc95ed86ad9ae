"""Downloads against a real HTTPS ListServer on 127.0.0.1 with a throwaway CA (DESIGN §7)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import traceback
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.server import Fault, ListServer
from imagesync.images.download import DiskFullError, Downloader, DownloadError, DownloadPolicy, DownloadRequest
from imagesync.net import guard as netguard
from imagesync.util import logfields
from tests.support.tmpfs import tmpfs

MiB = 1024 * 1024
# The server is on loopback, which downloads refuse unless allowed (DESIGN §9).
LOOPBACK = netguard.parse_networks(["127.0.0.0/8"])
FAST = DownloadPolicy(retries=3, timeout=5.0, connect_timeout=5.0, min_free_space=0, chunk_size=256 * 1024)


@dataclass
class Env:
    server: ListServer
    ca_dir: Path
    cache: Path
    sleeps: list[float] = field(default_factory=list)
    opened: list[Downloader] = field(default_factory=list)

    def downloader(self, policy: DownloadPolicy = FAST, cache: Path | None = None) -> Downloader:
        downloader = Downloader(cache or self.cache, replace(policy, allowed_networks=LOOPBACK), ca_dir=self.ca_dir,
                                sleep=self.sleeps.append)
        self.opened.append(downloader)
        return downloader

    def publish(self, path: str, data: bytes, *, listed: bytes | None = None, size: int | None = None
                ) -> DownloadRequest:
        """Serve ``data`` at ``path``; the request lists the sha512 of ``listed`` (default: ``data``)."""
        self.server.put(path, data)
        digest = hashlib.sha512(data if listed is None else listed).hexdigest()
        return DownloadRequest(digest, len(data) if size is None else size, self.server.url(path), f"test{path}")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[pki.Credential, Path]:
    ca = pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "download test CA")]))
    ca_dir = pki.write_ca_dir(tmp_path_factory.mktemp("certs"), [ca], [pki.make_crl(ca, [])])
    return pki.make_server_credential(ca), ca_dir


@pytest.fixture
def env(tls: tuple[pki.Credential, Path], tmp_path: Path) -> Iterator[Env]:
    credential, ca_dir = tls
    with ListServer(credential.cert_pem, credential.key_pem) as server:
        world = Env(server, ca_dir, tmp_path / "cache")
        yield world
        for downloader in world.opened:
            downloader.close()


def blob(seed: str, size: int) -> bytes:
    block = hashlib.sha512(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def images_in(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "images").rglob("*") if p.is_file())


def partial_of(env: Env, request: DownloadRequest) -> Path:
    return env.cache / "partial" / f"{request.sha512}.partial"


def test_first_download_lands_in_cache_then_cache_is_used_without_request(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    data = blob("a", 3 * MiB + 17)
    request = env.publish("/img/a.img", data)
    downloader = env.downloader()
    with caplog.at_level(logging.INFO, logger="imagesync.images.download"):
        first = downloader.fetch(request)
    assert first.path == env.cache / "images" / request.sha512[:2] / request.sha512
    assert first.path.read_bytes() == data
    assert (first.size, first.fetched_bytes) == (len(data), len(data))
    records = [logfields.record_fields(r) for r in caplog.records]
    [done] = [r for r in records if r.get("result") == "downloaded"]
    assert done["image"] == "test/img/a.img" and done["bytes"] == len(data) and "seconds" in done
    assert downloader.partials() == [] and downloader.blobs() == [first.path]
    again = env.downloader().fetch(request)  # a new run: only the disk remembers
    assert (again.path, again.fetched_bytes) == (first.path, 0)
    assert env.server.hits("/img/a.img") == 1


def test_cached_file_of_wrong_size_is_deleted_and_downloaded_again(env: Env) -> None:
    data = blob("w", 100_000)
    request = env.publish("/img/w.img", data)
    final = env.cache / "images" / request.sha512[:2] / request.sha512
    final.parent.mkdir(parents=True)
    final.write_bytes(data[:500])
    assert env.downloader().fetch(request).fetched_bytes == len(data)
    assert final.read_bytes() == data


def test_torn_cached_file_of_right_size_is_detected_and_downloaded_again(env: Env) -> None:
    # Blobs are renamed into place without fsync; a machine crash can leave right-sized garbage behind.
    data = blob("t", 100_000)
    request = env.publish("/img/t.img", data)
    final = env.cache / "images" / request.sha512[:2] / request.sha512
    final.parent.mkdir(parents=True)
    final.write_bytes(bytes(len(data)))
    assert env.downloader().fetch(request).fetched_bytes == len(data)
    assert final.read_bytes() == data
    assert env.server.hits("/img/t.img") == 1


def test_resume_requests_only_the_missing_half(env: Env) -> None:
    data = blob("r", 2 * MiB + 3)
    half = len(data) // 2
    request = env.publish("/img/r.img", data)
    partial_of(env, request).parent.mkdir(parents=True)
    partial_of(env, request).write_bytes(data[:half])
    result = env.downloader().fetch(request)
    assert env.server.last_headers("/img/r.img")["Range"] == f"bytes={half}-"
    assert result.path.read_bytes() == data
    assert result.fetched_bytes == len(data) - half
    assert not partial_of(env, request).exists()


def test_complete_partial_is_verified_and_promoted_without_request(env: Env) -> None:
    data = blob("c", 50_000)
    request = env.publish("/img/c.img", data)
    partial_of(env, request).parent.mkdir(parents=True)
    partial_of(env, request).write_bytes(data)
    assert env.downloader().fetch(request).fetched_bytes == 0
    assert env.server.hits("/img/c.img") == 0 and images_in(env.cache)[0].read_bytes() == data


def test_partial_longer_than_the_image_is_discarded(env: Env) -> None:
    data = blob("l", 40_000)
    request = env.publish("/img/l.img", data)
    partial_of(env, request).parent.mkdir(parents=True)
    partial_of(env, request).write_bytes(data + b"junk")
    result = env.downloader().fetch(request)
    assert "Range" not in env.server.last_headers("/img/l.img")
    assert result.path.read_bytes() == data and result.fetched_bytes == len(data)


def test_server_ignoring_range_restarts_from_zero(env: Env) -> None:
    data = blob("i", 1 * MiB + 5)
    request = env.publish("/img/i.img", data)
    partial_of(env, request).parent.mkdir(parents=True)
    partial_of(env, request).write_bytes(b"X" * 1000)  # wrong bytes: a resume would end in a checksum mismatch
    # A server that does not do ranges answers 200 with the whole body.
    env.server.inject("/img/i.img", Fault.status(200, body=data))
    result = env.downloader().fetch(request)
    assert env.server.last_headers("/img/i.img")["Range"] == "bytes=1000-"
    assert result.path.read_bytes() == data and result.fetched_bytes == len(data)


def test_unsatisfiable_range_discards_partial_and_restarts(env: Env) -> None:
    data = blob("u", 30_000)
    request = env.publish("/img/u.img", data)
    partial_of(env, request).parent.mkdir(parents=True)
    partial_of(env, request).write_bytes(data[:100])
    env.server.inject("/img/u.img", Fault.status(416, {"Content-Range": f"bytes */{len(data)}"}))
    result = env.downloader().fetch(request)
    assert result.path.read_bytes() == data and result.fetched_bytes == len(data)
    assert env.server.hits("/img/u.img") == 2 and "Range" not in env.server.last_headers("/img/u.img")


def test_corrupted_bytes_fail_with_checksum_mismatch_and_leave_nothing(env: Env) -> None:
    good = blob("g", 500_000)
    bad = bytearray(good)
    bad[1234] ^= 1
    request = env.publish("/img/g.img", bytes(bad), listed=good)
    with pytest.raises(DownloadError, match="checksum mismatch: expected " + request.sha512[:16]) as info:
        env.downloader().fetch(request)
    assert hashlib.sha512(bad).hexdigest()[:16] in str(info.value)
    assert str(info.value).startswith("test/img/g.img: ")
    assert images_in(env.cache) == [] and not partial_of(env, request).exists()


def test_size_announced_by_server_differs_from_list(env: Env) -> None:
    data = blob("s", 10_000)
    request = env.publish("/img/s.img", data, size=9_999)
    with pytest.raises(DownloadError, match=r"size mismatch: .* announces 10000 bytes, the list says 9999"):
        env.downloader().fetch(request)
    assert images_in(env.cache) == [] and env.server.hits("/img/s.img") == 1


def test_body_longer_than_listed_is_aborted(env: Env) -> None:
    request = env.publish("/img/o.img", b"", size=300_000)
    env.server.inject("/img/o.img", Fault.oversize(50 * MiB, declare_length=False))
    with pytest.raises(DownloadError, match="more than the listed 300000 bytes"):
        env.downloader().fetch(request)
    assert images_in(env.cache) == [] and not partial_of(env, request).exists()


def test_truncated_body_is_resumed_with_range(env: Env) -> None:
    data = blob("t", 3 * MiB)
    request = env.publish("/img/t.img", data)
    env.server.inject("/img/t.img", Fault.truncate(MiB))
    result = env.downloader().fetch(request)
    assert env.server.hits("/img/t.img") == 2
    assert env.server.last_headers("/img/t.img")["Range"] == f"bytes={MiB}-"
    assert result.path.read_bytes() == data and result.fetched_bytes == len(data)
    assert env.sleeps == [1.0]


def test_reset_then_success(env: Env) -> None:
    data = blob("x", 200_000)
    request = env.publish("/img/x.img", data)
    env.server.inject("/img/x.img", Fault.reset())
    assert env.downloader().fetch(request).path.read_bytes() == data
    assert env.server.hits("/img/x.img") == 2


def test_stall_is_a_timeout_then_retried(env: Env) -> None:
    data = blob("st", 100_000)
    request = env.publish("/img/st.img", data)
    env.server.inject("/img/st.img", Fault.stall(5))
    policy = DownloadPolicy(retries=1, timeout=0.3, min_free_space=0)
    assert env.downloader(policy).fetch(request).path.read_bytes() == data
    assert env.server.hits("/img/st.img") == 2


def test_server_errors_are_retried_with_backoff_then_give_up(env: Env) -> None:
    request = env.publish("/img/e.img", blob("e", 1000))
    for _ in range(FAST.retries + 1):
        env.server.inject("/img/e.img", Fault.status(500))
    with pytest.raises(DownloadError, match=r"HTTP 500.*gave up after 4 attempts"):
        env.downloader().fetch(request)
    assert env.server.hits("/img/e.img") == FAST.retries + 1
    assert env.sleeps == [1.0, 2.0, 4.0]


def test_retry_after_is_honoured(env: Env) -> None:
    data = blob("ra", 1000)
    request = env.publish("/img/ra.img", data)
    env.server.inject("/img/ra.img", Fault.status(429, {"Retry-After": "7"}))
    assert env.downloader().fetch(request).path.read_bytes() == data
    assert env.sleeps == [7.0]


def test_not_found_is_not_retried_and_url_is_redacted(env: Env) -> None:
    request = DownloadRequest("a" * 128, 10, env.server.url("/img/none.img").replace("://", "://s3cret-t0ken@"),
                              "test/none")
    with pytest.raises(DownloadError, match=r"not found at https://\*\*\*@127\.0\.0\.1:\d+/img/none\.img") as info:
        env.downloader().fetch(request)
    assert "s3cret" not in str(info.value)
    assert env.server.hits("/img/none.img") == 1 and env.sleeps == []


def test_too_large_is_refused_before_any_request(env: Env) -> None:
    request = env.publish("/img/big.img", blob("b", 5000))
    policy = DownloadPolicy(max_image_size=4999, min_free_space=0)
    with pytest.raises(DownloadError, match="exceeds max_image_size 4999"):
        env.downloader(policy).fetch(request)
    assert env.server.hits("/img/big.img") == 0


def test_free_space_is_checked_before_any_request(env: Env) -> None:
    request = env.publish("/img/f.img", blob("f", 5000))
    policy = DownloadPolicy(min_free_space=1 << 60)
    with pytest.raises(DiskFullError, match=r"need 0\.0 MiB plus min_free_space .* GiB, have .* GiB"):
        env.downloader(policy).fetch(request)
    assert env.server.hits("/img/f.img") == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def test_disk_full_while_writing_keeps_the_partial_for_a_later_resume(env: Env, small_disk: Path) -> None:
    data = blob("d", 3 * MiB)
    request = env.publish("/img/d.img", data)
    # The space check passes (as if another process filled the disk after it); the write then meets ENOSPC.
    policy = DownloadPolicy(min_free_space=-(1 << 30), retries=1, chunk_size=64 * 1024)
    with pytest.raises(DiskFullError, match="disk full while writing"):
        env.downloader(policy, cache=small_disk).fetch(request)
    partial = small_disk / "partial" / f"{request.sha512}.partial"
    kept = partial.stat().st_size
    assert 0 < kept < len(data)
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    result = env.downloader(policy, cache=small_disk).fetch(request)
    assert env.server.last_headers("/img/d.img")["Range"] == f"bytes={kept}-"
    assert result.path.read_bytes() == data and result.fetched_bytes == len(data) - kept


def test_fetch_all_isolates_failures_and_downloads_duplicates_once(env: Env) -> None:
    one, two = env.publish("/img/1.img", blob("1", MiB)), env.publish("/img/2.img", blob("2", MiB + 1))
    broken = env.publish("/img/3.img", blob("3", 1000))
    env.server.inject("/img/3.img", Fault.status(403))
    twin = DownloadRequest(one.sha512, one.size, one.url, "other/list-entry")
    downloader = env.downloader(DownloadPolicy(concurrency=2, min_free_space=0))
    results = downloader.fetch_all([one, broken, two, twin])
    assert set(results) == {one.sha512, two.sha512, broken.sha512}
    assert isinstance(results[broken.sha512], DownloadError) and "HTTP 403" in str(results[broken.sha512])
    for request in (one, two):
        outcome = results[request.sha512]
        assert not isinstance(outcome, DownloadError) and outcome.fetched_bytes == request.size
    assert env.server.hits("/img/1.img") == 1
    assert downloader.bytes_fetched == one.size + two.size


def test_a_failed_download_returned_by_fetch_all_keeps_no_buffer_alive(env: Env) -> None:
    # The error is kept until the run ends: its tracebacks must not pin the read buffer or the response (issue 9).
    request = env.publish("/img/o.img", blob("o", 1000))
    env.server.inject("/img/o.img", Fault.oversize(4000, declare_length=False))
    error = env.downloader().fetch_all([request])[request.sha512]
    assert isinstance(error, DownloadError) and "size mismatch" in str(error)
    frames, current = [], error.__cause__
    assert current is not None
    while current is not None:
        frames += [frame for frame, _ in traceback.walk_tb(current.__traceback__)]
        current = current.__cause__ or current.__context__
    assert "_stream" in {frame.f_code.co_name for frame in frames}
    pinned = {name for frame in frames for name, value in frame.f_locals.items()
              if isinstance(value, bytearray | requests.Response)}
    assert pinned == set()


def test_memory_stays_flat_for_a_64_mib_image(env: Env, tmp_path: Path) -> None:
    source = tmp_path / "big.img"
    digest = hashlib.sha512()
    with source.open("wb") as handle:
        for index in range(64):
            block = blob(str(index), MiB)
            digest.update(block)
            handle.write(block)
    env.server.put_file("/img/big.img", source)
    request = DownloadRequest(digest.hexdigest(), 64 * MiB, env.server.url("/img/big.img"), "test/big")
    downloader = env.downloader(DownloadPolicy(min_free_space=0))
    tracemalloc.start()
    try:
        result = downloader.fetch(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.fetched_bytes == 64 * MiB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_images_downloaded_one_after_another_share_one_connection(env: Env) -> None:
    """Before: the fast read path left urllib3 unaware that the body had ended, so every image closed its
    connection and the next one paid a new TCP and TLS handshake (assert 4 == 1)."""
    requests_ = [env.publish(f"/kept/{n}.img", blob(f"kept-{n}", 40_000)) for n in range(4)]
    downloader = env.downloader()
    for request in requests_:
        downloader.fetch(request)
    assert len(images_in(env.cache)) == 4
    assert env.server.accepted() == 1


def test_a_truncated_body_never_goes_back_to_the_pool(env: Env) -> None:
    broken = env.publish("/cut.img", blob("cut", 300_000))
    env.server.inject("/cut.img", Fault.truncate(1000))
    whole = env.publish("/whole.img", blob("whole", 1000))
    downloader = env.downloader()
    assert downloader.fetch(broken).size == 300_000  # resumed on a new connection after the cut
    downloader.fetch(whole)
    assert env.server.accepted() == 2
