"""imagesync against atrope 2.0.0, side by side: the same signed list, images, HTTPS server, Keystone and Glance.

One invocation builds everything: a grid CA directory (with CRL) and a list signer, N raw images of SIZE random
bytes served by the demo's HTTPS ListServer on 127.0.0.1 (token-protected list, AppDB style), a dev cloud (real
Keystone + Glance from tests/devcloud) in which the sync user holds the member role of the VO's project, and
atrope 2.0.0 from PyPI in a venv of its own (installed by this script the first time, cached under --cache,
keyed on the pin and tests/devcloud/constraints.txt, whose versions it shares with the dev cloud).

Each repetition runs three rounds in rotating order: imagesync, atrope, and the baselines. A tool's round starts
from nothing (no state, no cache, none of its images in Glance) and times, each as one child process from spawn
to exit: the first sync; a no-op rerun; and a new version of one image (the list re-signed with that image's
version, bytes and sha512 changed), during which Glance is polled for the active images of that identifier to
find the longest time with none. Image bytes the server sends are counted per run. After every run the tool's
images are checked in Glance: N active ones with the listed sha512, each shared with the VO project and accepted.
The baselines are what the targets of issue 9 compare against: download+verify alone (`curl` + `sha512sum` of
the N files one after the other, and imagesync's Downloader fetching them download.concurrency at a time), and
the upload alone (`glance image-create --file` of each file, and one glanceclient process creating and uploading
them all). Medians over the repetitions; each target uses the faster of its two baselines.

Both tools get the configuration an operator would write: imagesync its YAML (glance target, visibility shared,
projects_file mapping the list's VO to the project); atrope its atrope.conf ([glance] password auth,
[dispatchers] dispatcher = glance, [sources] hepix_sources, [cache] path, ca_path = the CA directory) and
hepix.yaml (url, token, endorser dn/ca, project = the VO project's id). What atrope needed beyond that, all
documented behaviour of its 2.0.0 code rather than workarounds of ours:
- it fetches lists with requests' default trust (not the CA directory), so its environment gets
  REQUESTS_CA_BUNDLE = certifi's bundle plus the bench CA (a real AppDB has a public certificate);
- it downloads images trusting only the CA directory's ``*.pem`` files (plus certifi), so the directory carries
  the CA as ``imagesync-bench-ca.pem`` beside ``<hash>.0``, as IGTF distributions do;
- it requires every AppDB field (dc:source, hv:uri, hv:email, ad:user:*, sl:comments, ...), so the list has them;
- its options group is ``[dispatchers]`` (its sample file says ``[dispatcher]``, which is silently ignored);
- it verifies with ``openssl smime -verify`` and no CRL check; imagesync checks the CRL (crl: require);
- it takes hv:format as the Glance disk_format, so the images are raw and say so.
atrope has no rollback check and no lock; on a new version it deletes the old image before uploading the new one
(hence its time with no active image). Every run re-hashes each cached image in 128-byte reads and, per image,
authenticates anew to Keystone for a token scoped to the VO project to accept the share: most of its no-op.

Full size (5 x 256 MiB, 3 repetitions) takes about 8 minutes and ~5 GiB of disk under --dir (the images, one
tool's cache and Glance's store at a time); the first invocation adds ~40 s to install atrope.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from cloudenv import Cloud, child_env, dev_cloud, devcloud_home  # bench/ is on sys.path when a benchmark runs
from common import compile_like_installed, make_image, parse_size, work_dir
from publisher import VO, Listed, Publisher, later

from imagesync.images.download import Downloader, DownloadPolicy, DownloadRequest
from imagesync.net.guard import parse_networks

MiB = 1024 * 1024
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ATROPE_PIN = "atrope==2.0.0"
CONSTRAINTS = REPO / "tests" / "devcloud" / "constraints.txt"
LIST_PATH = "/store/vo/bench.vo/image.list"
VO_PROJECT = "vo-alpha"
IMAGESYNC_TAG = "imagesync"
FIRST_VS_FLOOR = 1.15  # first sync <= 1.15 x max(download+verify alone, upload alone)
FIRST_VS_ATROPE = 3.0  # and >= 3x faster than atrope
NOOP_VS_ATROPE = 6.0
NOOP_SECONDS = 1.0


# -- atrope in a venv of its own ---------------------------------------------------------------------------------

def ensure_atrope(cache: Path) -> Path:
    """The ``atrope`` command of a venv holding atrope 2.0.0, made the first time (a few tens of seconds)."""
    key = hashlib.sha256(ATROPE_PIN.encode() + CONSTRAINTS.read_bytes()).hexdigest()[:12]
    venv = cache / f"atrope-2.0.0-{key}"
    command = venv / "bin" / "atrope"
    if (venv / ".complete").is_file():
        return command
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "atrope-install.log"
    print(f"installing {ATROPE_PIN} into {venv} (log {log})", flush=True)
    with log.open("w") as out:
        for argv in ([sys.executable, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                      "--no-input", "-c", str(CONSTRAINTS), ATROPE_PIN]):
            if subprocess.run(argv, stdout=out, stderr=out, check=False).returncode != 0:
                raise SystemExit(f"installing atrope failed: see {log}")
    (venv / ".complete").write_text(ATROPE_PIN + "\n")
    for stale in cache.glob("atrope-2.0.0-*"):  # venvs of older constraints are never used again
        if stale != venv:
            shutil.rmtree(stale, ignore_errors=True)
    return command


# -- the two tools -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    seconds: float
    image_bytes: int
    peak_mib: float | None = None


@dataclass
class Tool:
    """How one tool is configured, run, and recognised in Glance."""

    name: str
    work: Path
    argv: list[str]
    env: dict[str, str]
    tag: str
    id_property: str  # the Glance property naming the list's dc:identifier
    sha_property: str
    log: Path
    peak_file: Path | None = None

    def reset(self, glance: Any) -> None:
        """No state, no cache, none of its images in Glance."""
        for image in list(glance.images.list(filters={"tag": [self.tag]})):
            glance.images.delete(image["id"])
        for sub in ("state", "cache"):
            shutil.rmtree(self.work / sub, ignore_errors=True)
            (self.work / sub).mkdir()

    def run(self, publisher: Publisher) -> Run:
        before = publisher.server.image_bytes
        start = time.perf_counter()
        with self.log.open("a") as log:
            log.write(f"\n=== {datetime.now():%H:%M:%S} {' '.join(self.argv[-2:])}\n")
            log.flush()
            code = subprocess.run(self.argv, env=self.env, stdout=log, stderr=log, check=False).returncode
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"{self.name} exited {code}: see {self.log}")
        peak = None
        if self.peak_file is not None:
            peak = json.loads(self.peak_file.read_text())["vmhwm_kib"] / 1024
        return Run(seconds, publisher.server.image_bytes - before, peak)

    def active(self, glance: Any, identifier: str | None = None) -> list[Any]:
        filters: dict[str, Any] = {"tag": [self.tag]}
        if identifier is not None:
            filters[self.id_property] = identifier
        return [i for i in glance.images.list(filters=filters) if i["status"] == "active"]


def imagesync_tool(root: Path, publisher: Publisher, cloud: Cloud) -> Tool:
    work = root / "imagesync"
    work.mkdir()
    token = work / "token"
    token.write_text(publisher.token + "\n")
    token.chmod(0o600)
    mapping = work / "mapping.json"
    mapping.write_text(json.dumps({VO: {"project": VO_PROJECT, "domain": "Default"}}))
    config = {
        "state_dir": str(work / "state"), "cache_dir": str(work / "cache"),
        "trust": {"ca_dir": str(publisher.ca_dir), "crl": "require"},
        "download": {"min_free_space": "64MiB", "allowed_networks": ["127.0.0.0/8"]},
        "lists": {"bench": {"url": publisher.url(LIST_PATH), "token_file": str(token),
                            "endorser": publisher.endorser}},
        "targets": {"cloud": {"driver": "glance", "auth": cloud.auth(), "region": cloud.region,
                              "visibility": "shared", "projects_file": str(mapping), "tag": IMAGESYNC_TAG}},
    }
    path = work / "imagesync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    peak = work / "peak.json"
    argv = [sys.executable, str(BENCH / "peak.py"), str(peak), "--config", str(path), "-q", "sync"]
    return Tool("imagesync", work, argv, child_env({}), IMAGESYNC_TAG, "imagesync_image_id", "imagesync_sha512",
                work / "imagesync.log", peak)


def atrope_tool(root: Path, publisher: Publisher, cloud: Cloud, atrope: Path) -> Tool:
    work = root / "atrope"
    work.mkdir()
    sources = work / "hepix.yaml"
    sources.write_text(yaml.safe_dump({"bench": {
        "url": publisher.url(LIST_PATH), "enabled": True, "endorser": publisher.endorser, "token": publisher.token,
        "prefix": "", "project": cloud.vo_projects[VO_PROJECT], "images": []}}, sort_keys=False))
    user = cloud.user
    conf = work / "atrope.conf"
    conf.write_text(f"""[DEFAULT]
state_path = {work / "state"}
ca_path = {publisher.ca_dir}
download_ca_file = {work / "state" / "atrope-ca-bundle.pem"}
log_file = {work / "atrope-own.log"}

[cache]
path = {work / "cache"}

[dispatchers]
dispatcher = glance

[sources]
hepix_sources = {sources}

[glance]
auth_type = password
auth_url = {cloud.auth_url}
username = {user.username}
password = {user.password}
project_name = {user.project_name}
user_domain_name = {user.user_domain_name}
project_domain_name = {user.project_domain_name}
""")
    conf.chmod(0o600)
    # atrope fetches the list with requests' default trust: certifi's bundle plus our CA.
    certifi = subprocess.run([str(atrope.parent / "python"), "-c", "import certifi; print(certifi.where())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    bundle = work / "requests-ca-bundle.pem"
    bundle.write_bytes(Path(certifi).read_bytes() + publisher.ca.cert_pem)
    argv = [str(atrope), "--config-file", str(conf), "dispatch"]
    return Tool("atrope", work, argv, child_env({"REQUESTS_CA_BUNDLE": str(bundle)}), "atrope", "appdb_id",
                "sha512", work / "atrope.log")


# -- checks and the gap poller -------------------------------------------------------------------------------------

def check(tool: Tool, cloud: Cloud, glance: Any, expected: Sequence[Listed], when: str) -> None:
    """Fail unless Glance holds exactly the expected images, active, shared with the VO project and accepted."""
    held = {(i.get(tool.id_property), i.get(tool.sha_property)): i for i in tool.active(glance)}
    want = {(e.identifier, e.sha512) for e in expected}
    problems = []
    if set(held) != want or len(held) != len(tool.active(glance)):
        problems.append(f"active images {sorted(k[0] or '?' for k in held)} != listed {sorted(w[0] for w in want)}")
    project = cloud.vo_projects[VO_PROJECT]
    for key, image in held.items():
        members = {m["member_id"]: m["status"] for m in glance.image_members.list(image["id"])}
        if members.get(project) != "accepted":
            problems.append(f"{key[0]} is not shared with {VO_PROJECT} and accepted: {members}")
    if problems:
        raise SystemExit(f"{tool.name} after {when}: " + "; ".join(problems) + f" (see {tool.log})")


class GapPoller:
    """Polls Glance for the active images of one identifier; the longest stretch with none, in seconds."""

    def __init__(self, tool: Tool, glance: Any, identifier: str, interval: float) -> None:
        self._tool, self._glance, self._identifier, self._interval = tool, glance, identifier, interval
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._loop, name="gap-poller", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            count = len(self._tool.active(self._glance, self._identifier))
            self.samples.append((time.perf_counter(), count))
            self._stop.wait(self._interval)

    def __enter__(self) -> GapPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        """Fail unless the first sample saw exactly the one image: else Glance ignored the property filter."""
        if not self.samples or self.samples[0][1] != 1:
            raise SystemExit(f"{self._tool.name}: polling Glance for {self._identifier} saw "
                             f"{self.samples[0][1] if self.samples else 'no'} active images at the start, not 1")

    def longest_gap(self) -> float:
        """From the first sample seeing none to the next seeing one (a sample period of resolution)."""
        longest, since = 0.0, None
        for at, count in self.samples:
            if count == 0 and since is None:
                since = at
            elif count > 0 and since is not None:
                longest, since = max(longest, at - since), None
        if since is not None:
            longest = max(longest, self.samples[-1][0] - since)
        return longest

    def period(self) -> float:
        times = [t for t, _ in self.samples]
        return statistics.median(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else 0.0


# -- rounds ----------------------------------------------------------------------------------------------------------

@dataclass
class Images:
    v1: list[Listed]
    v2: list[Listed]  # image 0 at version 2, the rest as in v1
    files: dict[str, Path]  # sha512 -> file


@dataclass
class Figures:
    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.runs.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        return statistics.median(self.runs[key])


def tool_round(tool: Tool, publisher: Publisher, cloud: Cloud, images: Images, figures: Figures,
               poll: float) -> str:
    glance = cloud.glance()
    tool.reset(glance)
    created = later(None)
    publisher.publish(LIST_PATH, "bench-list", images.v1, created)
    first = tool.run(publisher)
    check(tool, cloud, glance, images.v1, "the first sync")
    noop = tool.run(publisher)
    check(tool, cloud, glance, images.v1, "the no-op rerun")
    publisher.publish(LIST_PATH, "bench-list", images.v2, later(created))
    with GapPoller(tool, cloud.glance(), images.v2[0].identifier, poll) as poller:
        update = tool.run(publisher)
    poller.check()
    check(tool, cloud, glance, images.v2, "the new version")
    tool.reset(glance)
    n = tool.name
    for key, value in ((f"{n} first", first.seconds), (f"{n} noop", noop.seconds), (f"{n} update", update.seconds),
                       (f"{n} gap", poller.longest_gap()), (f"{n} noop bytes", noop.image_bytes),
                       (f"{n} first bytes", first.image_bytes)):
        figures.add(key, value)
    peaks = [r.peak_mib for r in (first, noop, update) if r.peak_mib is not None]
    if peaks:
        figures.add(f"{n} peak", max(peaks))
    return (f"{n}: first {first.seconds:.2f}s ({first.image_bytes / MiB:.0f} MiB served), no-op {noop.seconds:.2f}s "
            f"({noop.image_bytes} B), new version {update.seconds:.2f}s, no active image for "
            f"{poller.longest_gap():.2f}s (poll period {poller.period():.2f}s)"
            + (f", peak RSS {max(peaks):.0f} MiB" if peaks else ""))


def baseline_round(publisher: Publisher, cloud: Cloud, images: Images, root: Path, glance_cli: Path,
                   figures: Figures) -> str:
    urls = [(publisher.url(i.path), i.sha512, i.size) for i in images.v1]
    curl = curl_sha512sum(urls, publisher.ca_pem, root / "curl.out")
    fetched = child_seconds(["--child-download", str(root / "dl-cache"), str(publisher.ca_dir), json.dumps(urls)],
                            cloud)
    shutil.rmtree(root / "dl-cache", ignore_errors=True)
    files = [str(images.files[i.sha512]) for i in images.v1]
    cli = glance_cli_uploads(glance_cli, files, cloud)
    uploaded = child_seconds(["--child-upload", json.dumps(files)], cloud)
    glance = cloud.glance()
    for image in list(glance.images.list(filters={"tag": ["bench-baseline"]})):
        glance.images.delete(image["id"])
    for key, value in (("curl+sha512sum", curl), ("Downloader", fetched), ("glance image-create", cli),
                       ("glanceclient upload", uploaded)):
        figures.add(key, value)
    return (f"baselines: curl+sha512sum {curl:.2f}s, imagesync Downloader {fetched:.2f}s, "
            f"glance image-create {cli:.2f}s, glanceclient upload {uploaded:.2f}s")


def curl_sha512sum(urls: Sequence[tuple[str, str, int]], ca_pem: Path, out: Path) -> float:
    start = time.perf_counter()
    for url, sha512, _size in urls:
        subprocess.run(["curl", "-sf", "--cacert", str(ca_pem), "-o", str(out), url], check=True)
        summed = subprocess.run(["sha512sum", str(out)], check=True, capture_output=True, text=True).stdout
        if summed.split()[0] != sha512:
            raise SystemExit("curl baseline: checksum mismatch")
    seconds = time.perf_counter() - start
    out.unlink()
    return seconds


def glance_cli_uploads(glance_cli: Path, files: Sequence[str], cloud: Cloud) -> float:
    start = time.perf_counter()
    for n, file in enumerate(files):
        subprocess.run([str(glance_cli), "--os-image-api-version", "2", "image-create", "--disk-format", "raw",
                        "--container-format", "bare", "--file", file, "--name", f"bench-cli-{n}",
                        "--tags", "bench-baseline"], check=True, capture_output=True, env=child_env(cloud.env()))
    return time.perf_counter() - start


def child_seconds(args: list[str], cloud: Cloud) -> float:
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True,
                          env=child_env(cloud.env()))
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def child_download(cache: str, ca_dir: str, urls_json: str) -> int:
    """Child: imagesync's Downloader fetching the images, download.concurrency at a time."""
    policy = DownloadPolicy(min_free_space=0, allowed_networks=parse_networks(["127.0.0.0/8"]))
    downloader = Downloader(Path(cache), policy, ca_dir=Path(ca_dir))
    requests = [DownloadRequest(sha512, size, url, f"bench/{n}") for n, (url, sha512, size) in
                enumerate(json.loads(urls_json))]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=policy.concurrency) as pool:
        done = list(pool.map(downloader.fetch, requests))
    seconds = time.perf_counter() - start
    downloader.close()
    assert all(d.fetched_bytes == d.size for d in done)
    print(json.dumps({"seconds": seconds}))
    return 0


def child_upload(files_json: str) -> int:
    """Child: one glanceclient session creating and uploading each file in turn (credentials from OS_*)."""
    start = time.perf_counter()
    glance = Cloud.from_env().glance()
    for n, file in enumerate(json.loads(files_json)):
        image = glance.images.create(name=f"bench-upload-{n}", disk_format="raw", container_format="bare",
                                     tags=["bench-baseline"])
        with open(file, "rb") as handle:
            glance.images.upload(image["id"], handle, image_size=Path(file).stat().st_size)
    print(json.dumps({"seconds": time.perf_counter() - start}))
    return 0


# -- the whole comparison ----------------------------------------------------------------------------------------

def make_images(root: Path, count: int, size: int) -> Images:
    files: dict[str, Path] = {}
    t0 = time.perf_counter()
    for n in range(count + 1):  # the last one is image 0's version 2
        path = root / f"image-{n}.raw"
        files[make_image(path, size)] = path
    sums = list(files)
    v1 = [Listed(f"bench-image-{n}", "1", sums[n], size, title=f"Bench image {n}") for n in range(count)]
    v2_0 = Listed(v1[0].identifier, "2", sums[count], size, title=v1[0].title)
    print(f"images: {count + 1} x {size / MiB:.0f} MiB written in {time.perf_counter() - t0:.1f}s", flush=True)
    return Images(v1=v1, v2=[v2_0, *v1[1:]], files=files)


def measure(args: argparse.Namespace, root: Path, atrope: Path) -> Figures:
    figures = Figures()
    images = make_images(root, args.images, args.size)
    with Publisher(root) as publisher, dev_cloud(root) as cloud:
        for image in {*images.v1, *images.v2}:
            publisher.serve_file(image, images.files[image.sha512])
        cloud.grant_member(cloud.vo_projects[VO_PROJECT])
        tools = [imagesync_tool(root, publisher, cloud), atrope_tool(root, publisher, cloud, atrope)]
        rounds: list[Callable[[], str]] = [
            *(lambda t=t: tool_round(t, publisher, cloud, images, figures, args.poll) for t in tools),
            lambda: baseline_round(publisher, cloud, images, root, args.glance_cli, figures)]
        for rep in range(args.repeat):
            for n in range(len(rounds)):
                line = rounds[(rep + n) % len(rounds)]()  # rotate the order: no tool always goes first
                print(f"run {rep + 1}: {line}", flush=True)
    return figures


def report(figures: Figures, args: argparse.Namespace) -> bool:
    m = figures.median
    print(f"\nmedians of {args.repeat}, {args.images} x {args.size / MiB:.0f} MiB:")
    print(f"{'':34s}{'imagesync':>12s}{'atrope':>12s}{'atrope/imagesync':>18s}")
    for label, key in (("first sync (s)", "first"), ("no-op rerun (s)", "noop"), ("new version (s)", "update"),
                       ("no active image, longest (s)", "gap")):
        ours, theirs = m(f"imagesync {key}"), m(f"atrope {key}")
        ratio = f"{theirs / ours:.2f}x" if ours > 0 else "-"
        print(f"{label:34s}{ours:12.2f}{theirs:12.2f}{ratio:>18s}")
    print(f"{'image bytes served by no-op rerun':34s}{m('imagesync noop bytes'):12.0f}{m('atrope noop bytes'):12.0f}")
    if "imagesync peak" in figures.runs:
        print(f"{'imagesync peak RSS (MiB)':34s}{max(figures.runs['imagesync peak']):12.0f}")
    download = min(m("curl+sha512sum"), m("Downloader"))
    upload = min(m("glance image-create"), m("glanceclient upload"))
    print(f"baselines: download+verify alone {download:.2f}s (curl+sha512sum {m('curl+sha512sum'):.2f}s, "
          f"Downloader {m('Downloader'):.2f}s); upload alone {upload:.2f}s (glance image-create "
          f"{m('glance image-create'):.2f}s, glanceclient {m('glanceclient upload'):.2f}s)")
    first, noop = m("imagesync first"), m("imagesync noop")
    floor = max(download, upload)
    checks = [
        (f"first sync / max(download+verify, upload) = {first / floor:.2f}", first / floor <= FIRST_VS_FLOOR,
         f"<= {FIRST_VS_FLOOR}"),
        (f"first sync: atrope / imagesync = {m('atrope first') / first:.2f}x",
         m("atrope first") / first >= FIRST_VS_ATROPE, f">= {FIRST_VS_ATROPE:.0f}x"),
        (f"no-op rerun: atrope / imagesync = {m('atrope noop') / noop:.2f}x", m("atrope noop") / noop >= NOOP_VS_ATROPE,
         f">= {NOOP_VS_ATROPE:.0f}x"),
        (f"no-op rerun image bytes = {max(figures.runs['imagesync noop bytes']):.0f}",
         max(figures.runs["imagesync noop bytes"]) == 0, "= 0"),
        (f"no-op rerun = {noop:.2f}s", noop <= NOOP_SECONDS, f"<= {NOOP_SECONDS}s"),
    ]
    full = args.images == 5 and args.size == 256 * MiB
    note = "" if full else f" [targets are for 5 x 256 MiB; this run has {args.images} x {args.size / MiB:g} MiB]"
    for text, met, target in checks:
        print(f"{text} (target {target}): {'MET' if met else 'NOT MET'}{note}")
    met_all = all(met for _, met, _ in checks)
    print(f"result: {sum(met for _, met, _ in checks)} of {len(checks)} targets met: "
          f"{'MET' if met_all else 'NOT MET'}")
    return met_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5, help="how many images (default 5)")
    parser.add_argument("--size", type=parse_size, default=256 * MiB, help="size of each, e.g. 256M, 16M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between Glance polls during an update")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "imagesync-bench",
                        help="where atrope's venv is kept between invocations")
    parser.add_argument("--glance-cli", type=Path, default=devcloud_home() / "venv" / "bin" / "glance")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs) at the end")
    if len(sys.argv) > 1 and sys.argv[1] == "--child-download":
        return child_download(*sys.argv[2:5])
    if len(sys.argv) > 1 and sys.argv[1] == "--child-upload":
        return child_upload(sys.argv[2])
    args = parser.parse_args()
    compile_like_installed()
    atrope = ensure_atrope(args.cache)
    with work_dir(args.dir, args.keep) as root:
        figures = measure(args, root, atrope)
    return 0 if report(figures, args) else 1


if __name__ == "__main__":
    sys.exit(main())
