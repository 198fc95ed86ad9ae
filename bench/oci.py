"""A no-op rerun from an OCI registry against a no-op rerun from a signed list (issue 10, point 5).

One invocation publishes the same N tiny images (default 50, 4 KiB each) two ways:

- as one signed HEPiX list on the benchmarks' HTTPS ListServer (bench/publisher.py: the demo's PKI and server,
  behind an AppDB-style token), as bench/scale.py does;
- as cosign-signed single-layer OCI artifacts with EGI's annotations in a real Debian ``docker-registry`` (2.8, the
  one the integration tests start, tests/support/oci_registry.py: TLS from a test CA, htpasswd auth), pushed with
  oras-py and signed with the `.sig` tag as cosign lays it out (tests/support/oci_push.py, cosign_sign.py).

The artifacts are spread over a few repositories (default 5, so 10 tags each), not one repository of N tags: EGI's
Harbor project holds one repository per image family with a few tags each, and a rerun pays one ``tags/list`` per
repository plus one manifest HEAD per tag, so both costs show. ``--repositories 1`` gives the other layout.

Each source gets a config of its own (its own state, cache and directory target) and is synced by the real
`imagesync` command in a child process, timed from spawn to exit with its peak RSS (bench/peak.py), as
bench/scale.py runs it. The first syncs are timed but not compared; then the two no-op reruns alternate (list first
in odd rounds, registry first in even ones), --repeat rounds, and their medians give the ratio registry / list
(goal <= 1.0: "as fast as a no-op rerun of a list").

The registry's own access log counts its requests during each registry no-op (docker-registry's
``log.accesslog.disabled: false``, written to its log file; no proxy in between, so nothing is added to the path
being timed): tags/list GETs, manifest HEADs, manifest GETs, blob GETs (goals: 0 manifest GETs, 0 blob GETs) and
401 challenges. The list server counts the image bytes it sends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from common import compile_like_installed, parse_size, work_dir  # bench/ is on sys.path when a benchmark runs
from publisher import Listed, Publisher, later

from imagesync.demo import cosign as cosign_sign
from imagesync.sources.oci.cosign import signature_tag
from tests.support import oci_push
from tests.support.oci_registry import Logged, RegistryServer, logged_after
from tests.support.tls import ServerPKI, make_server_pki

BENCH = Path(__file__).resolve().parent
RATIO_GOAL = 1.0
VO = "bench.vo"
# What EGI's pushes carry (the annotation the sync requires, and the Glance fields it maps).
EGI = {"eu.egi.cloud.tag": "2025-09-04-bench", "org.openstack.glance.os_distro": "ubuntu",
       "org.openstack.glance.os_version": "24.04", "org.openstack.glance.architecture": "x86_64",
       "org.openstack.glance.os_type": "linux", "org.openstack.glance.os_admin_user": "ubuntu",
       "org.openstack.glance.disk_format": "raw", "org.openstack.glance.container_format": "bare"}


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mib: float


class AccessLoggedRegistry(RegistryServer):
    """The tests' registry with its access log on (one Apache combined line per request, into its log file)."""

    def __init__(self, workdir: Path, pki: ServerPKI, **options: Any) -> None:
        super().__init__(workdir, pki, access_log=True, **options)

    @property
    def log_file(self) -> Path:
        return self.registry.log_file


def tiny(name: str, size: int) -> bytes:
    """``size`` bytes of binary data (never "text", which imagesync refuses as a raw disk), distinct per name."""
    block = hashlib.sha512(name.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def publish_list(publisher: Publisher, count: int, size: int) -> str:
    """One signed list of ``count`` images; returns its server path."""
    images = []
    for i in range(count):
        data = tiny(f"list-{i}", size)
        image = Listed(f"bench-{i:04d}", "1", hashlib.sha512(data).hexdigest(), size, title=f"Bench {i}")
        publisher.serve_bytes(image, data)
        images.append(image)
    path = "/store/vo/bench.vo/oci-bench/image.list"
    publisher.publish(path, "oci-bench-list", images, later(None))
    return path


def repositories(count: int) -> list[str]:
    return [f"egi/family-{r:02d}" for r in range(count)]


def push_all(server: RegistryServer, repos: Sequence[str], count: int, size: int,
             key: cosign_sign.PrivateKey) -> None:
    """``count`` artifacts round-robin over ``repos``, each signed under its `.sig` tag as cosign does."""
    for i in range(count):
        repository = repos[i % len(repos)]
        pushed = oci_push.push_artifact(server, repository, f"v{i:04d}", tiny(f"oci-{i}", size),
                                        annotations={**EGI, "eu.egi.cloud.tag": f"bench-{i:04d}"})
        made = cosign_sign.sig_manifest([cosign_sign.signature_layer(key, pushed.digest)])
        for data in made.blobs.values():
            oci_push.push_blob(server, repository, data)
        oci_push.push_manifest(server, repository, signature_tag(pushed.digest), made.manifest)


def list_config(root: Path, publisher: Publisher, path: str) -> Path:
    token = root / "token"
    token.write_text(publisher.token + "\n")
    token.chmod(0o600)
    entry = {"url": publisher.url(path), "token_file": str(token), "endorser": publisher.endorser}
    return write_config(root / "list", {"ca_dir": str(publisher.ca_dir), "crl": "require"}, {"lists": {"bench": entry}})


def registry_config(root: Path, server: RegistryServer, repos: Sequence[str], key_file: Path) -> Path:
    assert server.login is not None
    entry = {"url": server.url, "repositories": list(repos), "signature": "cosign", "cosign_keys": [str(key_file)],
             "username": server.login.username, "password": server.login.password, "vo": VO,
             "required_annotation": "eu.egi.cloud.tag"}
    return write_config(root / "registry", {"ca_dir": str(server.ca_dir)}, {"registries": {"bench": entry}})


def write_config(work: Path, trust: dict[str, str], source: dict[str, Any]) -> Path:
    work.mkdir()
    data = {"state_dir": str(work / "state"), "cache_dir": str(work / "cache"), "trust": trust,
            "download": {"min_free_space": "64MiB", "allowed_networks": ["127.0.0.0/8"]},
            **source, "targets": {"target": {"driver": "directory", "path": str(work / "archive")}}}
    path = work / "imagesync.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_sync(config: Path) -> Run:
    """``imagesync -q sync`` on ``config`` in a child process; fails unless it exits 0."""
    peak, log = config.parent / "peak.json", config.parent / "sync.log"
    argv = [sys.executable, str(BENCH / "peak.py"), str(peak), "--config", str(config), "-q", "sync"]
    start = time.perf_counter()
    with log.open("a") as err:
        code = subprocess.run(argv, stdout=err, stderr=err, env=dict(os.environ), check=False).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"imagesync sync exited {code}: see {log}")
    return Run(seconds, json.loads(peak.read_text())["vmhwm_kib"] / 1024)


def held(config: Path) -> int:
    return sum(1 for _ in (config.parent / "archive").glob("*/*.json"))


def classify(requests: Sequence[Logged]) -> Counter[str]:
    """Requests by kind: ``tags/list GET``, ``manifest HEAD``, ``manifest GET``, ``blob GET``, ... and ``401``."""
    counts: Counter[str] = Counter()
    for request in requests:
        counts[f"{request.kind} {request.method}"] += 1
        if request.status == 401:
            counts["401"] += 1
        counts["all"] += 1
    return counts


def show(label: str, run: Run, extra: str = "") -> None:
    print(f"{label:36s}{run.seconds:8.3f} s  peak RSS {run.peak_mib:6.1f} MiB{extra}", flush=True)


def counts_text(counts: Counter[str]) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()) if kind != "all")
    return f"{kinds} ({counts['all']} in all)"


@dataclass(frozen=True)
class Noops:
    list_runs: list[Run]
    registry_runs: list[Run]
    registry_requests: list[Counter[str]]
    list_image_bytes: int


def noops(list_cfg: Path, registry_cfg: Path, server: AccessLoggedRegistry, publisher: Publisher,
          repeat: int) -> Noops:
    list_runs: list[Run] = []
    registry_runs: list[Run] = []
    requests: list[Counter[str]] = []
    bytes_before = publisher.server.image_bytes
    _, offset = logged_after(server.log_file, 0)
    for round_ in range(repeat):
        for source in ("list", "registry") if round_ % 2 == 0 else ("registry", "list"):
            if source == "list":
                list_runs.append(run_sync(list_cfg))
                show(f"round {round_ + 1}: list no-op", list_runs[-1])
                continue
            registry_runs.append(run_sync(registry_cfg))
            logged, offset = logged_after(server.log_file, offset)
            requests.append(classify(logged))
            show(f"round {round_ + 1}: registry no-op", registry_runs[-1], f"  requests: {counts_text(requests[-1])}")
    return Noops(list_runs, registry_runs, requests, publisher.server.image_bytes - bytes_before)


def report(args: argparse.Namespace, result: Noops) -> bool:
    list_median = statistics.median(r.seconds for r in result.list_runs)
    registry_median = statistics.median(r.seconds for r in result.registry_runs)
    ratio = registry_median / list_median
    worst = Counter({kind: max(c[kind] for c in result.registry_requests)
                     for c in result.registry_requests for kind in c})
    per_repo = args.images / args.repositories
    print(f"\n{args.images} images of {args.image_size} B: one signed list, and {args.repositories} registry "
          f"repositories of {per_repo:g} signed tags; medians of {args.repeat} alternating no-op reruns")
    print(f"list no-op rerun       {list_median:.3f} s  (image bytes sent by the list server: "
          f"{result.list_image_bytes})")
    print(f"registry no-op rerun   {registry_median:.3f} s")
    print(f"registry requests per no-op (most in any round): tags/list GET {worst['tags/list GET']}, "
          f"manifest HEAD {worst['manifest HEAD']}, manifest GET {worst['manifest GET']}, "
          f"blob GET {worst['blob GET']}, blob HEAD {worst['blob HEAD']}, 401 challenges {worst['401']}, "
          f"all {worst['all']}")
    checks = [(f"ratio registry / list = {ratio:.2f}", ratio <= RATIO_GOAL, f"<= {RATIO_GOAL}"),
              (f"manifest GETs = {worst['manifest GET']}", worst["manifest GET"] == 0, "= 0"),
              (f"blob GETs = {worst['blob GET']}", worst["blob GET"] == 0, "= 0")]
    for text, met, goal in checks:
        print(f"{text} (goal {goal}): {'MET' if met else 'NOT MET'}")
    met_all = all(met for _, met, _ in checks)
    print(f"result: {sum(met for _, met, _ in checks)} of {len(checks)} goals met: {'MET' if met_all else 'NOT MET'}")
    return met_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repositories", type=int, default=5, help="registry repositories the images spread over")
    parser.add_argument("--image-size", type=parse_size, default=4096, help="bytes per image (default 4k)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--auth", choices=("htpasswd", "token"), default="htpasswd",
                        help="registry login: htpasswd (Basic; the registry checks a bcrypt hash on every request) or "
                             "token (bearer tokens, as Harbor hands out)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs) at the end")
    args = parser.parse_args()
    compile_like_installed()
    with work_dir(args.dir, args.keep) as root, Publisher(root) as publisher, \
            AccessLoggedRegistry(root / "registry-server", make_server_pki("imagesync bench registry CA"),
                                 auth=args.auth) as server:
        t0 = time.perf_counter()
        path = publish_list(publisher, args.images, args.image_size)
        key = cosign_sign.new_private_key()
        key_file = root / "cosign.pub"
        key_file.write_bytes(cosign_sign.public_key_pem(key))
        repos = repositories(args.repositories)
        push_all(server, repos, args.images, args.image_size, key)
        print(f"published {args.images} images as a signed list and as cosign-signed artifacts in "
              f"{args.repositories} repositories of docker-registry in {time.perf_counter() - t0:.1f}s", flush=True)
        list_cfg = list_config(root, publisher, path)
        registry_cfg = registry_config(root, server, repos, key_file)
        for name, config in (("list", list_cfg), ("registry", registry_cfg)):
            show(f"{name}: first sync (not compared)", run_sync(config))
            if held(config) != args.images:
                raise SystemExit(f"the {name} sync's directory holds {held(config)} images, not {args.images}")
        result = noops(list_cfg, registry_cfg, server, publisher, args.repeat)
    return 0 if report(args, result) else 1


if __name__ == "__main__":
    sys.exit(main())
