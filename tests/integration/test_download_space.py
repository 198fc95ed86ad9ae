"""Downloads into a cache too small for all of them at once: a real 8 MiB tmpfs, the real HTTPS server.

Two images of 5 MiB each fit alone but not together. Started side by side, both used to stop half-way at ENOSPC,
and every later run refused both (neither's remaining bytes fit beside the other's partial): no run ever
completed either. Downloads are now admitted against the free space, the most advanced first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.server import ListServer
from imagesync.demo.world import DemoImage, DemoWorld
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.images.download import Downloaded, Downloader, DownloadError, DownloadPolicy, DownloadRequest
from imagesync.net import guard as netguard
from tests.support.tmpfs import tmpfs

MiB = 1024 * 1024
IMAGE = 5 * MiB
# The server is on loopback, which image downloads refuse unless allowed (DESIGN §9).
POLICY = DownloadPolicy(concurrency=2, retries=1, timeout=5.0, connect_timeout=5.0, min_free_space=0,
                        chunk_size=256 * 1024, allowed_networks=netguard.parse_networks(["127.0.0.0/8"]))


@pytest.fixture
def small_cache(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "cache", "8m") as mount:
        yield mount


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ListServer, Path]]:
    ca = pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "space test CA")]))
    ca_dir = pki.write_ca_dir(tmp_path_factory.mktemp("certs"), [ca], [pki.make_crl(ca, [])])
    credential = pki.make_server_credential(ca)
    with ListServer(credential.cert_pem, credential.key_pem) as running:
        yield running, ca_dir


def blob(seed: str, size: int = IMAGE) -> bytes:
    block = hashlib.sha512(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def publish(server: tuple[ListServer, Path], name: str, data: bytes) -> DownloadRequest:
    server[0].put(f"/space/{name}", data)
    return DownloadRequest(hashlib.sha512(data).hexdigest(), len(data), server[0].url(f"/space/{name}"), name)


def downloader(server: tuple[ListServer, Path], cache: Path) -> Downloader:
    return Downloader(cache, POLICY, ca_dir=server[1], sleep=lambda _: None)


def seed_partial(cache: Path, request: DownloadRequest, data: bytes) -> Path:
    """What an interrupted run leaves: the first bytes of the image under partial/."""
    path = cache / "partial" / f"{request.sha512}.partial"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_two_images_that_fit_only_one_at_a_time_are_serialised_not_both_stranded(
        server: tuple[ListServer, Path], small_cache: Path) -> None:
    one, two = publish(server, "one", blob("one")), publish(server, "two", blob("two"))
    fetcher = downloader(server, small_cache)
    try:
        results = fetcher.fetch_all([one, two])
    finally:
        fetcher.close()
    done = [r for r in results.values() if isinstance(r, Downloaded)]
    refused = [r for r in results.values() if isinstance(r, DownloadError)]
    assert len(done) == 1 and len(refused) == 1, [str(r) for r in refused]
    message = str(refused[0])
    assert "disk full while writing" not in message  # refused before starting, not stranded half-way
    assert "not enough free space" in message and "imagesync gc" in message
    assert "1 cached image" in message
    assert fetcher.partials() == []  # the refused one never started: nothing half-way holds space


def test_partials_stranded_by_an_earlier_run_no_longer_block_every_run(
        server: tuple[ListServer, Path], small_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    ahead_data, behind_data = blob("ahead"), blob("behind")
    ahead, behind = publish(server, "ahead", ahead_data), publish(server, "behind", behind_data)
    # The old deadlock: both half-way, 7.5 of 8 MiB used, neither's remaining bytes fit in what is left.
    seed_partial(small_cache, ahead, ahead_data[: 4 * MiB])
    behind_partial = seed_partial(small_cache, behind, behind_data[: 7 * MiB // 2])
    fetcher = downloader(server, small_cache)
    try:
        with caplog.at_level(logging.INFO):
            results = fetcher.fetch_all([behind, ahead])  # the order given does not decide: progress does
    finally:
        fetcher.close()
    finished = results[ahead.sha512]
    assert isinstance(finished, Downloaded), str(finished)
    assert finished.fetched_bytes == IMAGE - 4 * MiB  # resumed, not started again
    assert finished.path.read_bytes() == ahead_data
    assert not behind_partial.exists()
    assert f"image=behind partial dropped ({7 * MiB // 2} bytes) so that image=ahead can complete" in caplog.text
    refused = results[behind.sha512]
    assert isinstance(refused, DownloadError) and "not enough free space" in str(refused)


def test_a_partial_of_an_image_outside_this_run_is_named_never_dropped(
        server: tuple[ListServer, Path], small_cache: Path) -> None:
    other_data = blob("other", 6 * MiB)
    other = DownloadRequest(hashlib.sha512(other_data).hexdigest(), len(other_data), "https://unused.invalid/", "x")
    kept = seed_partial(small_cache, other, other_data[: 4 * MiB])
    wanted = publish(server, "wanted", blob("wanted"))
    fetcher = downloader(server, small_cache)
    try:
        results = fetcher.fetch_all([wanted])
    finally:
        fetcher.close()
    refused = results[wanted.sha512]
    assert isinstance(refused, DownloadError)
    assert f"partial/{other.sha512[:16]}" in str(refused)
    assert "imagesync gc" in str(refused)
    assert kept.stat().st_size == 4 * MiB


def test_a_less_advanced_partial_never_displaces_a_more_advanced_one(
        server: tuple[ListServer, Path], small_cache: Path) -> None:
    ahead_data, behind_data = blob("far"), blob("near")
    ahead, behind = publish(server, "far", ahead_data), publish(server, "near", behind_data)
    ahead_partial = seed_partial(small_cache, ahead, ahead_data[: 4 * MiB])
    seed_partial(small_cache, behind, behind_data[: 7 * MiB // 2])
    # The most advanced one cannot be fetched in this run (gone from its server): its partial must survive that.
    server[0].remove("/space/far")
    fetcher = downloader(server, small_cache)
    try:
        results = fetcher.fetch_all([ahead, behind])
    finally:
        fetcher.close()
    assert isinstance(results[ahead.sha512], DownloadError)
    assert ahead_partial.stat().st_size == 4 * MiB
    assert isinstance(results[behind.sha512], DownloadError)


# -- whole runs through the CLI, as cron runs them ----------------------------------------------------------


BIG = [DemoImage(identifier=f"big-{name}", version="1", title=f"Big {name}", data=blob(name)) for name in ("a", "b")]


def sync_config(world: DemoWorld, cache: Path) -> Path:
    return world.write_config({
        "cache_dir": str(cache),
        "download": {"concurrency": 2, "retries": 1, "min_free_space": 0, "allowed_networks": ["127.0.0.0/8"]},
        "targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}},
    })


def imagesync(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "imagesync", "--config", str(config), *args]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)


def in_archive(world: DemoWorld) -> list[str]:
    return sorted(p.name for p in (world.root / "archive").glob("demo/*.json"))


def converge(world: DemoWorld, config: Path) -> None:
    """Run 1 completes one image; gc drops its uploaded copy from the cache; run 2 completes the other."""
    first = imagesync(config, "sync")
    assert first.returncode == EXIT_PARTIAL, first.stdout + first.stderr
    assert len(in_archive(world)) == 1, first.stdout + first.stderr
    assert "not enough free space" in first.stdout + first.stderr
    assert "disk full while writing" not in first.stdout + first.stderr
    assert imagesync(config, "gc").returncode == EXIT_OK
    second = imagesync(config, "sync")
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    assert in_archive(world) == ["big-a-1.raw.json", "big-b-1.raw.json"]


def test_two_runs_complete_both_images_that_fit_only_one_at_a_time(world: DemoWorld, small_cache: Path) -> None:
    world.publish(BIG)
    converge(world, sync_config(world, small_cache))


def test_a_cache_left_with_both_images_half_way_converges_in_two_runs(world: DemoWorld, small_cache: Path) -> None:
    world.publish(BIG)
    # What the old code left behind: both downloads stopped at ENOSPC, 7.5 of 8 MiB used; every later run
    # refused both, and gc rightly kept them (their images are still wanted).
    for image, held in zip(BIG, (4 * MiB, 7 * MiB // 2), strict=True):
        request = DownloadRequest(hashlib.sha512(image.data).hexdigest(), len(image.data), "", image.identifier)
        seed_partial(small_cache, request, image.data[:held])
    converge(world, sync_config(world, small_cache))
