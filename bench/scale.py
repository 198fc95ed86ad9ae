"""imagesync at scale: 2,000 tiny images in 50 signed lists, into a directory and into Glance.

One invocation signs the lists once (the demo's PKI, a CA directory with CRL, every list behind an AppDB-style token
on the demo's HTTPS ListServer on 127.0.0.1, which sets TCP_NODELAY so small responses do not stall ~40 ms on
Nagle's algorithm; a probe at the start prints the time of a small request to show it) and then runs the real
`imagesync` command, each run a child process timed from spawn to exit with its own peak RSS (VmHWM, recorded by
bench/peak.py; ru_maxrss of a child is inherited from the parent through fork and exec):

- directory target: the first sync (nothing in state, cache or target), then the no-op rerun (median of --repeat);
- Glance target (a dev cloud from tests/devcloud, visibility private): the same, plus a bare listing of the
  images it then holds (one glanceclient process, page size 1000) as the floor of a no-op;
- `imagesync plan` from an empty state as the number of lists doubles (default 6, 12, 25, 50 lists), each the
  median of --repeat, with the growth factor of time and peak RSS from one step to the next.

Image bytes the server sends are counted for every run (a no-op must send none). The figures are printed against
the targets of issue 9 (stated for 2,000 images): no-op rerun in Glance <= 2.5 s, peak RSS <= 120 MiB, first
sync into a directory <= 60 s. At full size the directory part takes about 2 minutes and the Glance part (2,000
uploads into the dev cloud) about 4 more; --targets directory leaves Glance out.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from cloudenv import Cloud, child_env, dev_cloud  # bench/ is on sys.path when a benchmark runs
from common import compile_like_installed, parse_size, work_dir
from publisher import Listed, Publisher, later

BENCH = Path(__file__).resolve().parent
MiB = 1024 * 1024
NOOP_GLANCE_SECONDS = 2.5
PEAK_MIB = 120.0
FIRST_DIRECTORY_SECONDS = 60.0
TARGET_IMAGES = 2000
TAG = "imagesync-scale"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mib: float
    image_bytes: int


@dataclass(frozen=True)
class Lists:
    """The published lists: their server paths and images, in order."""

    paths: list[str]
    images: list[list[Listed]]

    @property
    def count(self) -> int:
        return sum(len(images) for images in self.images)


def tiny(name: str, size: int) -> bytes:
    """``size`` bytes of binary data (never "text", which imagesync refuses as a raw disk), distinct per name."""
    block = hashlib.sha512(name.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def publish_all(publisher: Publisher, lists: int, per_list: int, size: int) -> Lists:
    t0 = time.perf_counter()
    created = later(None)
    paths, all_images = [], []
    for n in range(lists):
        images = []
        for i in range(per_list):
            data = tiny(f"scale-{n}-{i}", size)
            image = Listed(f"scale-{n:03d}-{i:04d}", "1", hashlib.sha512(data).hexdigest(), size,
                           title=f"Scale {n}/{i}")
            publisher.serve_bytes(image, data)
            images.append(image)
        path = f"/store/vo/bench.vo/list-{n:03d}/image.list"
        publisher.publish(path, f"scale-list-{n:03d}", images, created)
        paths.append(path)
        all_images.append(images)
    print(f"published {lists} signed lists of {per_list} images of {size} B in {time.perf_counter() - t0:.1f}s",
          flush=True)
    return Lists(paths, all_images)


def nagle_probe(publisher: Publisher, image: Listed) -> float:
    """Median seconds of a small GET on a kept-alive HTTPS connection (~0.04 when Nagle stalls responses)."""
    times = []
    with requests.Session() as session:
        for _ in range(20):
            start = time.perf_counter()
            session.get(publisher.url(image.path), verify=str(publisher.ca_pem), timeout=10).raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


class Runner:
    """Writes configs and runs `imagesync` through bench/peak.py."""

    def __init__(self, root: Path, publisher: Publisher, lists: Lists) -> None:
        self.root, self.publisher, self.lists = root, publisher, lists
        token = root / "token"
        token.write_text(publisher.token + "\n")
        token.chmod(0o600)
        self.token = token

    def config(self, name: str, lists: int, target: dict[str, Any]) -> Path:
        work = self.root / name
        work.mkdir()
        data = {
            "state_dir": str(work / "state"), "cache_dir": str(work / "cache"),
            "trust": {"ca_dir": str(self.publisher.ca_dir), "crl": "require"},
            "download": {"min_free_space": "64MiB", "allowed_networks": ["127.0.0.0/8"]},
            "lists": {f"list-{n:03d}": {"url": self.publisher.url(path), "token_file": str(self.token),
                                        "endorser": self.publisher.endorser}
                      for n, path in enumerate(self.lists.paths[:lists])},
            "targets": {"target": target},
        }
        path = work / "imagesync.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(self, config: Path, command: str) -> Run:
        """Run ``imagesync COMMAND`` on ``config``; fails unless it exits 0 (a plan must also plan an add for every
        image of its lists)."""
        peak = config.parent / "peak.json"
        log, out = config.parent / f"{command}.log", config.parent / f"{command}.out"
        before = self.publisher.server.image_bytes
        argv = [sys.executable, str(BENCH / "peak.py"), str(peak), "--config", str(config), "-q", command]
        if command == "plan":
            argv += ["--format", "json"]
        start = time.perf_counter()
        with log.open("a") as err, out.open("w") as stdout:
            code = subprocess.run(argv, stdout=stdout, stderr=err, env=child_env({}), check=False).returncode
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"imagesync {command} exited {code}: see {log}")
        if command == "plan":
            self._check_plan(config, out)
        peak_mib = json.loads(peak.read_text())["vmhwm_kib"] / 1024
        return Run(seconds, peak_mib, self.publisher.server.image_bytes - before)

    def _check_plan(self, config: Path, out: Path) -> None:
        lists = len(yaml.safe_load(config.read_text())["lists"])
        want = sum(len(images) for images in self.lists.images[:lists])
        adds = sum(1 for action in json.loads(out.read_text())["actions"] if action["action"] == "add")
        if adds != want:
            raise SystemExit(f"imagesync plan of {lists} lists planned {adds} adds, not {want}: see {out}")


def median_run(runs: Sequence[Run]) -> Run:
    return Run(statistics.median(r.seconds for r in runs), max(r.peak_mib for r in runs),
               max(r.image_bytes for r in runs))


def show(label: str, run: Run) -> None:
    print(f"{label:44s}{run.seconds:9.2f} s  peak RSS {run.peak_mib:6.1f} MiB  image bytes {run.image_bytes}",
          flush=True)


def first_and_noop(runner: Runner, name: str, target: dict[str, Any], repeat: int) -> tuple[Run, Run, Path]:
    config = runner.config(name, len(runner.lists.paths), target)
    first = runner.run(config, "sync")
    show(f"{name}: first sync", first)
    noops = [runner.run(config, "sync") for _ in range(repeat)]
    for n, run in enumerate(noops):
        show(f"{name}: no-op rerun {n + 1}", run)
    return first, median_run(noops), config


def directory(runner: Runner, repeat: int) -> tuple[Run, Run]:
    archive = runner.root / "archive"
    first, noop, _ = first_and_noop(runner, "directory", {"driver": "directory", "path": str(archive)}, repeat)
    held = len(list(archive.glob("*/*.json")))
    if held != runner.lists.count:
        raise SystemExit(f"directory target holds {held} images, not {runner.lists.count}")
    return first, noop


def glance(runner: Runner, cloud: Cloud, repeat: int) -> tuple[Run, Run, float]:
    target = {"driver": "glance", "auth": cloud.auth(), "region": cloud.region, "visibility": "private", "tag": TAG}
    first, noop, _ = first_and_noop(runner, "glance", target, repeat)
    listings = [bare_listing(cloud) for _ in range(repeat)]
    held, seconds = listings[0][0], statistics.median(s for _, s in listings)
    if held != runner.lists.count:
        raise SystemExit(f"Glance holds {held} active images tagged {TAG}, not {runner.lists.count}")
    print(f"{'glance: bare listing (glanceclient, page 1000)':44s}{seconds:9.2f} s", flush=True)
    return first, noop, seconds


def bare_listing(cloud: Cloud) -> tuple[int, float]:
    """(active images tagged TAG, wall seconds) of a child process listing them: interpreter, token, pages."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child-list"], capture_output=True, text=True, check=True,
                          env=child_env(cloud.env()))
    return int(done.stdout.strip()), time.perf_counter() - start


def child_list() -> int:
    """Child: count the active images tagged TAG, in pages of 1000 (credentials from OS_*)."""
    images = Cloud.from_env().glance().images.list(filters={"tag": [TAG]}, page_size=1000)
    print(sum(1 for image in images if image["status"] == "active"))
    return 0


def plans(runner: Runner, steps: Sequence[int], repeat: int) -> list[tuple[int, Run]]:
    results = []
    for lists in steps:
        runs = []
        for n in range(repeat):
            config = runner.config(f"plan-{lists}-{n}", lists, {"driver": "directory",
                                                                 "path": str(runner.root / f"plan-{lists}-{n}-dir")})
            runs.append(runner.run(config, "plan"))
        run = median_run(runs)
        results.append((lists, run))
        show(f"plan, {lists} lists ({lists * len(runner.lists.images[0])} images)", run)
    return results


def report(args: argparse.Namespace, count: int, figures: dict[str, Any]) -> bool:
    print(f"\n{count} images in {args.lists} lists of {args.per_list}, {args.image_size} B each; "
          f"medians of {args.repeat} for no-op reruns and plans")
    scale = "" if count == TARGET_IMAGES else f" [targets are for {TARGET_IMAGES} images; this run has {count}]"
    checks = []
    if "directory" in figures:
        first, noop = figures["directory"]
        checks.append((f"directory: first sync {first.seconds:.2f}s = {first.seconds / FIRST_DIRECTORY_SECONDS:.2f} "
                       f"x target", first.seconds <= FIRST_DIRECTORY_SECONDS, f"<= {FIRST_DIRECTORY_SECONDS:.0f}s"))
        print(f"directory: no-op rerun {noop.seconds:.2f}s, {noop.image_bytes} image bytes")
    if "glance" in figures:
        first, noop, listing = figures["glance"]
        print(f"glance: first sync {first.seconds:.2f}s ({count / first.seconds:.1f} images/s); "
              f"no-op / bare listing = {noop.seconds / listing:.2f}")
        checks.append((f"glance: no-op rerun {noop.seconds:.2f}s = {noop.seconds / NOOP_GLANCE_SECONDS:.2f} x target",
                       noop.seconds <= NOOP_GLANCE_SECONDS, f"<= {NOOP_GLANCE_SECONDS}s"))
    synced = [key for key in ("directory", "glance") if key in figures]
    if synced:
        noop_bytes = max(figures[key][1].image_bytes for key in synced)
        checks.append((f"no-op reruns: {noop_bytes} image bytes", noop_bytes == 0, "= 0"))
        peak = max(run.peak_mib for key in synced for run in figures[key][:2])
        checks.append((f"peak RSS of the syncs {peak:.0f} MiB = {peak / PEAK_MIB:.2f} x target", peak <= PEAK_MIB,
                       f"<= {PEAK_MIB:.0f} MiB"))
    if figures.get("plans"):
        steps = figures["plans"]
        growth = ", ".join(f"{b[0]}/{a[0]} lists: time x{b[1].seconds / a[1].seconds:.2f}, "
                           f"peak x{b[1].peak_mib / a[1].peak_mib:.2f}" for a, b in itertools.pairwise(steps))
        print(f"plan growth as lists double: {growth}")
    for text, met, target in checks:
        print(f"{text} (target {target}): {'MET' if met else 'NOT MET'}{scale}")
    met_all = all(met for _, met, _ in checks)
    print(f"result: {sum(met for _, met, _ in checks)} of {len(checks)} targets met: {'MET' if met_all else 'NOT MET'}")
    return met_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=50)
    parser.add_argument("--per-list", type=int, default=40, help="images per list (default 40: 2,000 in all)")
    parser.add_argument("--image-size", type=parse_size, default=4096, help="bytes per image (default 4k)")
    parser.add_argument("--plan-lists", default=None,
                        help="comma-separated list counts for the plan timings (default: --lists halved three "
                             "times, e.g. 6,12,25,50)")
    parser.add_argument("--targets", default="directory,glance", help="which of directory,glance to sync into")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs) at the end")
    if len(sys.argv) > 1 and sys.argv[1] == "--child-list":
        return child_list()
    args = parser.parse_args()
    compile_like_installed()
    targets = {t.strip() for t in args.targets.split(",") if t.strip()}
    figures: dict[str, Any] = {}
    with work_dir(args.dir, args.keep) as root, Publisher(root) as publisher:
        lists = publish_all(publisher, args.lists, args.per_list, args.image_size)
        print(f"small HTTPS GET on a kept-alive connection: {nagle_probe(publisher, lists.images[0][0]) * 1000:.1f} "
              "ms median (~40 ms would mean a Nagle stall)", flush=True)
        runner = Runner(root, publisher, lists)
        if "directory" in targets:
            figures["directory"] = directory(runner, args.repeat)
        if "glance" in targets:
            with dev_cloud(root) as cloud:
                figures["glance"] = glance(runner, cloud, args.repeat)
        figures["plans"] = plans(runner, plan_steps(args), args.repeat)
    return 0 if report(args, lists.count, figures) else 1


def plan_steps(args: argparse.Namespace) -> list[int]:
    if args.plan_lists:
        return sorted({int(n) for n in args.plan_lists.split(",")})
    return sorted({max(1, args.lists >> k) for k in range(4)})


if __name__ == "__main__":
    sys.exit(main())
