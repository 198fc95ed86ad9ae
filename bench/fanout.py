"""One image to 1, 2 and 4 Glance targets (issue 11): one parallel run against the sequential way, and web-download.

One invocation starts a dev cloud (tests/devcloud), signs one list (the demo's PKI, HTTPS ListServer on 127.0.0.1) and
serves the image from a plain-HTTP ListServer on 127.0.0.1 (the dev cloud's Glance may web-download from there and
trusts only the system CAs), then runs the real `imagesync` command, each run a child process timed from spawn to exit:

(a) direct uploads: for N = 1, 2, 4 targets, one `imagesync sync` to all N (``targets_concurrency: 4``) against the
    sequential way, N runs of `imagesync sync --target NAME` one after the other on the same config, state and cache
    (so the sequential way downloads once too: only the pushes differ); medians of --repeat, alternating;
(b) ``upload: web-download``: one run to the same N targets, and the bytes leaving the sync host (the JSON report's
    bytes_downloaded + bytes_uploaded) against those of the direct run, next to the image bytes the image server sent.

The N targets are one Glance project with N targets of different ``tag:`` values: each sees only its own images, so
to imagesync they are N sites. Not several VO projects: the dev cloud has two, and a project per target would change
nothing measured here (the bytes go to the same Glance process and disk either way). That also means the N uploads
share one Glance and one disk on this host, unlike N real sites: the ratio 4 / 1 is a ceiling. Every run starts from
an empty state, cache and target (a fresh tag); its images are deleted after it, untimed.

The dev cloud's Glance runs --glance-workers API processes (default 4, where the test suite's cloud has 1): a real
Glance runs several (its default is one per CPU), and with one, the N concurrent uploads would all be received,
parsed and hashed by one Python process under one GIL. Each run also reports the CPU seconds of imagesync (the
child's rusage) and of Glance's processes (/proc) meanwhile, and their sum over this host's CPUs: where the time of
a run goes, and a floor under its wall time on this host (Keystone and the image server not even counted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cloudenv import Cloud, child_env, dev_cloud  # bench/ is on sys.path when a benchmark runs
from common import compile_like_installed, make_image, parse_size, work_dir
from publisher import CountingServer, Listed, Publisher, later

from imagesync.demo import pki

MiB = 1024 * 1024
COUNTS = (1, 2, 4)
RATIO_GOAL = 1.5
GLANCE_WORKERS = 4


@dataclass(frozen=True)
class Run:
    seconds: float
    downloaded: int
    uploaded: int
    pulled: int
    served: int  # image bytes the image server sent (to imagesync or to Glance)
    cpu_imagesync: float = 0.0  # CPU seconds (user + system) of the imagesync process
    cpu_glance: float = 0.0  # CPU seconds of Glance's processes meanwhile (only this benchmark uses its cloud)

    @property
    def leaving(self) -> int:
        """Image bytes through the sync host: downloaded into it plus uploaded out of it."""
        return self.downloaded + self.uploaded


class Bench:
    def __init__(self, root: Path, cloud: Cloud, publisher: Publisher, images: CountingServer, image: Listed) -> None:
        self.root, self.cloud, self.publisher, self.images, self.image = root, cloud, publisher, images, image
        self.token = root / "token"
        self.token.write_text(publisher.token + "\n")
        self.token.chmod(0o600)

    def config(self, n: int, upload: str) -> tuple[Path, list[str]]:
        """A fresh work directory and config with ``n`` targets of fresh tags; the target names."""
        work = self.root / f"run-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        names = [f"site{i}" for i in range(1, n + 1)]
        targets = {name: {"driver": "glance", "visibility": "private", "tag": f"fanout-{work.name}-{name}",
                          "region": self.cloud.region, "auth": self.cloud.auth(), "upload": upload,
                          "timeout": 600} for name in names}
        data = {"state_dir": str(work / "state"), "cache_dir": str(work / "cache"), "targets_concurrency": 4,
                "trust": {"ca_dir": str(self.publisher.ca_dir), "crl": "require"},
                "download": {"min_free_space": "64MiB", "allowed_networks": ["127.0.0.0/8"]},
                "lists": {"fanout": {"url": self.publisher.url("/store/vo/fanout/image.list"),
                                     "token_file": str(self.token), "endorser": self.publisher.endorser}},
                "targets": targets}
        path = work / "imagesync.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path, names

    def sync(self, config: Path, *target: str) -> Run:
        """``imagesync sync`` (of one target if given), timed; fails unless it exits 0."""
        argv = [sys.executable, "-m", "imagesync", "--config", str(config), "-q", "sync", "--format", "json",
                *(("--target", target[0]) if target else ())]
        before, glance_before, children_before = self.images.image_bytes, self.cloud.glance_cpu(), _children_cpu()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env({}), check=False)
        seconds = time.perf_counter() - start
        cpu_imagesync, cpu_glance = _children_cpu() - children_before, self.cloud.glance_cpu() - glance_before
        if done.returncode != 0:
            raise SystemExit(f"imagesync sync {' '.join(target)} exited {done.returncode}: {done.stderr[-2000:]}")
        counts: dict[str, Any] = json.loads(done.stdout)["summary"]
        return Run(seconds, counts["bytes_downloaded"], counts["bytes_uploaded"], counts.get("bytes_pulled", 0),
                   self.images.image_bytes - before, cpu_imagesync, cpu_glance)

    def parallel(self, n: int, upload: str = "direct") -> Run:
        config, _ = self.config(n, upload)
        try:
            return self.sync(config)
        finally:
            self.clean(config)

    def sequential(self, n: int) -> Run:
        config, names = self.config(n, "direct")
        try:
            runs = [self.sync(config, name) for name in names]
        finally:
            self.clean(config)
        return Run(sum(r.seconds for r in runs), sum(r.downloaded for r in runs), sum(r.uploaded for r in runs),
                   sum(r.pulled for r in runs), sum(r.served for r in runs), sum(r.cpu_imagesync for r in runs),
                   sum(r.cpu_glance for r in runs))

    def clean(self, config: Path) -> None:
        """Delete what the run put into Glance (untimed): the disk holds a few copies at most."""
        glance = self.cloud.glance()
        for target in yaml.safe_load(config.read_text())["targets"].values():
            for found in list(glance.images.list(filters={"tag": [target["tag"]]})):
                glance.images.delete(found["id"])


def _children_cpu() -> float:
    # Only the timed imagesync child is waited for between two readings: the dev cloud runs in its own session.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def publish(root: Path, publisher: Publisher, images: CountingServer, size: int) -> Listed:
    """Write the image, serve it over plain HTTP and sign a list naming it there."""
    file = root / "image.raw"
    sha512 = make_image(file, size)
    image = Listed("fanout-image", "1", sha512, size, "Fan-out benchmark image")
    images.put_file(image.path, file)
    body = publisher.body("/store/vo/fanout/image.list", "fanout-list", [image], later(None))
    for entry in body["hv:imagelist"]["hv:images"]:  # type: ignore[index]
        entry["hv:image"]["hv:uri"] = images.url(image.path)
    signed = pki.sign_smime(json.dumps(body, indent=1).encode(), publisher.signer)
    publisher.server.put("/store/vo/fanout/image.list", signed)
    print(f"published one image of {size / MiB:.0f} MiB (served over plain HTTP); the signed list is {len(signed)} B")
    return image


def measure(bench: Bench, repeat: int) -> tuple[dict[int, list[Run]], dict[int, list[Run]], dict[int, Run]]:
    parallel: dict[int, list[Run]] = {n: [] for n in COUNTS}
    sequential: dict[int, list[Run]] = {n: [] for n in COUNTS}
    for r in range(repeat):
        for n in COUNTS:
            # Alternate which way goes first, so neither always meets a warmer page cache.
            ways = [("parallel", parallel, bench.parallel), ("sequential", sequential, bench.sequential)]
            for label, runs, way in ways if r % 2 == 0 else ways[::-1]:
                runs[n].append(way(n))
                run = runs[n][-1]
                print(f"round {r + 1}: {n} target(s) {label:<10} {run.seconds:7.2f} s   CPU: imagesync "
                      f"{run.cpu_imagesync:5.2f} s, Glance {run.cpu_glance:5.2f} s", flush=True)
    pulled = {n: bench.parallel(n, "web-download") for n in COUNTS}
    for n, run in pulled.items():
        print(f"web-download: {n} target(s) {run.seconds:7.2f} s", flush=True)
    return parallel, sequential, pulled


def report(size: int, parallel: dict[int, list[Run]], sequential: dict[int, list[Run]], pulled: dict[int, Run],
           repeat: int) -> bool:
    def median(runs: list[Run]) -> float:
        return statistics.median(r.seconds for r in runs)

    print(f"\none image of {size / MiB:.0f} MiB to N Glance targets (one project, a tag each); "
          f"direct: medians of {repeat}, targets_concurrency 4")
    for n in COUNTS:
        p, s = median(parallel[n]), median(sequential[n])
        print(f"{n} target(s): one run {p:7.2f} s   sequential {s:7.2f} s   parallel / sequential = {p / s:.2f}")
    ratio = median(parallel[4]) / median(parallel[1])
    met = [ratio <= RATIO_GOAL]
    print(f"ratio 4 targets / 1 target (one run, direct) = {ratio:.2f} (goal <= {RATIO_GOAL}): "
          f"{'MET' if met[-1] else 'NOT MET'}")
    cpu_report(size, parallel, median(parallel[1]))
    print("bytes through the sync host (bytes_downloaded + bytes_uploaded), direct vs web-download:")
    for n in COUNTS:
        d, w = parallel[n][0], pulled[n]
        print(f"{n} target(s): direct {d.leaving / MiB:8.1f} MiB   web-download {w.leaving / MiB:8.1f} MiB "
              f"(pulled by Glance {w.pulled / MiB:.1f} MiB; image server sent {w.served / MiB:.1f} MiB)   "
              f"time {w.seconds:.2f} s vs {median(parallel[n]):.2f} s")
        met.append(w.leaving == 0)
    print(f"image bytes through the sync host with web-download = {max(w.leaving for w in pulled.values())} "
          f"(goal 0: the list only): {'MET' if all(met[1:]) else 'NOT MET'}")
    print(f"result: {sum(met)} of {len(met)} goals met: {'MET' if all(met) else 'NOT MET'}")
    return all(met)


def cpu_report(size: int, parallel: dict[int, list[Run]], one_target: float) -> None:
    """Where the time of the parallel runs goes: CPU seconds of imagesync and of Glance, and the shortest wall time
    this host's CPUs allow for them (their sum over the CPU count), against the 1-target run."""
    cpus = os.cpu_count() or 1
    print(f"CPU seconds of one run (direct, medians of {len(parallel[1])}; {cpus} CPUs on this host):")
    for n in COUNTS:
        mine = statistics.median(r.cpu_imagesync for r in parallel[n])
        glance = statistics.median(r.cpu_glance for r in parallel[n])
        floor = (mine + glance) / cpus
        print(f"{n} target(s): imagesync {mine:6.2f} s   Glance {glance:6.2f} s "
              f"({glance / (n * size / 1024**3):.2f} s per GiB received)   "
              f"(imagesync + Glance) / {cpus} CPUs = {floor:6.2f} s = {floor / one_target:.2f} x the 1-target run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB", help="image size (default 1GiB; e.g. 64MiB for a quick run)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per direct measurement (median; default 3)")
    parser.add_argument("--work", type=Path, help="parent of the work directory (default: the system's temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--glance-workers", type=int, default=GLANCE_WORKERS,
                        help=f"Glance API processes of the dev cloud (default {GLANCE_WORKERS})")
    args = parser.parse_args()
    size = parse_size(args.size)
    compile_like_installed()
    with work_dir(args.work, args.keep) as root, Publisher(root) as publisher, \
            CountingServer(tls=False) as images, dev_cloud(root, glance_workers=args.glance_workers) as cloud:
        print(f"Glance runs {args.glance_workers} API worker process(es)")
        image = publish(root, publisher, images, size)
        bench = Bench(root, cloud, publisher, images, image)
        ok = report(size, *measure(bench, args.repeat), args.repeat)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
