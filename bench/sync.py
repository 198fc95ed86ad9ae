"""Download + verify one big image: imagesync's Downloader vs `curl -s -o FILE URL && sha512sum FILE`.

Both sides fetch the same file from the same ListServer on 127.0.0.1 over plain HTTP (TLS would add the same
cipher cost to both and measure OpenSSL, not us). Runs alternate, each side several times; the medians give
``ratio = imagesync / (curl + sha512sum)`` (target <= 0.75). imagesync runs in a child process that reports its
own fetch time and peak RSS (VmHWM; target <= 120 MiB whatever the image size). Every imagesync run starts
from an empty cache and, as in production, renames the verified image into the cache without an fsync (the
cache re-verifies a blob before reusing it); ``--sync-curl`` makes the curl side run `sync FILE` as well.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import make_image, parse_size  # bench/ is on sys.path when a benchmark runs

from imagesync.demo.server import ListServer
from imagesync.images.download import Downloader, DownloadPolicy, DownloadRequest
from imagesync.net.guard import parse_networks

MiB = 1024 * 1024
RATIO_TARGET = 0.75
RSS_TARGET_MIB = 120.0


def run_curl(url: str, out: Path, sha512: str, durable: bool) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(out), url], check=True)
    if durable:
        subprocess.run(["sync", str(out)], check=True)
    summed = subprocess.run(["sha512sum", str(out)], check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - start
    assert summed.split()[0] == sha512, "curl side: checksum mismatch"
    out.unlink()
    return elapsed


def run_imagesync(url: str, cache: Path, sha512: str, size: int, chunk: int) -> tuple[float, float]:
    """(seconds of Downloader.fetch, peak RSS MiB) measured in a fresh child process."""
    child = subprocess.run([sys.executable, __file__, "--child", url, str(cache), sha512, str(size), str(chunk)],
                           check=True, capture_output=True, text=True)
    report = json.loads(child.stdout)
    shutil.rmtree(cache)
    return float(report["seconds"]), float(report["vmhwm_mib"])


def child(url: str, cache: str, sha512: str, size: str, chunk: str) -> int:
    # The ListServer is on loopback, which image downloads refuse unless allowed (DESIGN §9).
    policy = DownloadPolicy(min_free_space=0, chunk_size=int(chunk), allowed_networks=parse_networks(["127.0.0.0/8"]))
    downloader = Downloader(Path(cache), policy)
    start = time.perf_counter()
    result = downloader.fetch(DownloadRequest(sha512, int(size), url, "bench/image"))
    seconds = time.perf_counter() - start
    assert result.fetched_bytes == int(size)
    print(json.dumps({"seconds": seconds, "vmhwm_mib": vmhwm_mib()}))
    return 0


def vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(args: argparse.Namespace, root: Path) -> tuple[float, float, float]:
    image = root / "image.img"
    t0 = time.perf_counter()
    sha512 = make_image(image, args.size)
    print(f"image: {args.size / MiB:.0f} MiB written in {time.perf_counter() - t0:.1f}s under {root}")
    curl_times, ours, peaks = [], [], []
    with ListServer(tls=False) as server:
        server.put_file("/image.img", image)
        url = server.url("/image.img")
        for run in range(args.repeat):
            curl_times.append(run_curl(url, root / "curl.out", sha512, args.sync_curl))
            seconds, peak = run_imagesync(url, root / "cache", sha512, args.size, args.chunk)
            ours.append(seconds)
            peaks.append(peak)
            print(f"run {run + 1}: curl+sha512sum {curl_times[-1]:.2f}s  imagesync {seconds:.2f}s  "
                  f"peak RSS {peak:.0f} MiB")
    return statistics.median(curl_times), statistics.median(ours), max(peaks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=2 * 1024 * MiB, help="image size, e.g. 2G, 256M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=parse_size, default=DownloadPolicy().chunk_size)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go (same disk)")
    parser.add_argument("--sync-curl", action="store_true", help="also fsync the curl side's file")
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:7])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagesync-bench-", dir=args.dir) as tmp:
        curl, ours, peak = measure(args, Path(tmp))
    ratio = ours / curl
    met = ratio <= RATIO_TARGET and peak <= RSS_TARGET_MIB
    print(f"median curl+sha512sum {curl:.2f}s, median imagesync {ours:.2f}s "
          f"({args.size / MiB / ours:.0f} MiB/s)")
    print(f"ratio = imagesync / (curl + sha512sum) = {ratio:.2f} (target <= {RATIO_TARGET})")
    print(f"peak RSS of the imagesync download = {peak:.0f} MiB (target <= {RSS_TARGET_MIB:.0f})")
    print(f"result: ratio {ratio:.2f}, peak RSS {peak:.0f} MiB: {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
