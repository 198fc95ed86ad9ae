"""Many targets in one run (issue 11): bounded by ``targets_concurrency``, each one alone, deadlines per target.

Real HTTPS list server, real downloads, real directory targets. A slow site is a real directory driver behind
:class:`Watched`, which sleeps in ``add()`` or ``inventory()``: a real part cannot be made slow on demand, and
these tests are about what the run does around a slow call, not about the call. An unreachable site is a real
Glance target pointing at a closed port. Order is checked through the calls' recorded order, not time budgets.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from imagesync.config import settings as config
from imagesync.config.settings import TargetSettings
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.model import Held, RetireMode
from imagesync.run.pipeline import SyncResult, sync
from imagesync.targets import base as drivers
from imagesync.targets.base import Driver, Upload
from tests.devcloud.fixture import DevCloud
from tests.support.cli import run


class Calls:
    """What the watched drivers did, over all targets: the order of calls, and how many targets were inside one
    kind of call at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pause: dict[tuple[str, str], float] = {}  # (target, call) -> seconds slept inside it, first
        self.linger: dict[tuple[str, str], float] = {}  # (target, call) -> seconds slept inside it, last
        self.inside: dict[str, dict[str, int]] = {}  # call -> target -> calls running
        self.widest: dict[str, int] = {}  # call -> most targets inside it at once
        self.order: list[str] = []  # "<call> <target> start|end"

    @contextmanager
    def call(self, target: str, name: str) -> Iterator[None]:
        with self.lock:
            running = self.inside.setdefault(name, {})
            running[target] = running.get(target, 0) + 1
            self.widest[name] = max(self.widest.get(name, 0), sum(1 for n in running.values() if n))
            self.order.append(f"{name} {target} start")
        try:
            time.sleep(self.pause.get((target, name), 0.0))
            yield
            time.sleep(self.linger.get((target, name), 0.0))
        finally:
            with self.lock:
                running[target] -= 1
                self.order.append(f"{name} {target} end")

    def at(self, entry: str) -> int:
        return self.order.index(entry)

    def last(self, entry: str) -> int:
        return len(self.order) - 1 - self.order[::-1].index(entry)


class Watched:
    """A real driver whose calls are recorded in :class:`Calls` (and slowed down where it says)."""

    def __init__(self, inner: Driver, calls: Calls) -> None:
        self.inner = inner
        self.calls = calls
        self.name = inner.name
        self.capabilities = inner.capabilities

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)  # optional driver methods (placement)

    def inventory(self, *, known: Collection[str] | None = None) -> list[Held]:
        with self.calls.call(self.name, "inventory"):
            return self.inner.inventory(known=known)

    def add(self, upload: Upload) -> str:
        with self.calls.call(self.name, "add"):
            return self.inner.add(upload)

    def update_metadata(self, target_id: str, desired: Any, *, reactivate: bool) -> None:
        self.inner.update_metadata(target_id, desired, reactivate=reactivate)

    def retire(self, target_id: str, mode: RetireMode) -> None:
        with self.calls.call(self.name, "retire"):
            self.inner.retire(target_id, mode)

    def cleanup(self) -> list[str]:
        return self.inner.cleanup()

    def close(self) -> None:
        self.inner.close()


def watching(calls: Calls) -> Callable[[TargetSettings], Driver]:
    def connect(target: TargetSettings) -> Driver:
        return Watched(drivers.load(target), calls)

    return connect


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dead_glance() -> dict[str, object]:
    """A Glance target whose Keystone refuses every connection."""
    return {"driver": "glance", "visibility": "private", "timeout": 5, "auth": {
        "auth_type": "password", "auth_url": f"http://127.0.0.1:{closed_port()}/v3", "username": "u",
        "password": "p", "project_name": "p", "user_domain_name": "Default", "project_domain_name": "Default"}}


def directories(world: DemoWorld, *names: str, **extra: object) -> dict[str, dict[str, object]]:
    return {name: {"driver": "directory", "path": str(world.root / name), **extra} for name in names}


def held(world: DemoWorld, name: str) -> list[str]:
    return sorted(p.name for p in (world.root / name).glob("demo/*.json"))


def outcomes(result: SyncResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in result.results:
        found.setdefault(item.action.target, []).append(f"{item.action.kind} {item.status}")
    return {target: sorted(items) for target, items in found.items()}


def test_connecting_and_pushing_take_at_most_targets_concurrency_targets_at_once(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    names = ("t1", "t2", "t3", "t4")
    settings = config.load(world.write_config({"targets_concurrency": 2, "targets": directories(world, *names)}))
    calls = Calls()
    for name in names:
        calls.pause[(name, "inventory")] = calls.pause[(name, "add")] = 0.3
    result = sync(settings, dry_run=False, connect=watching(calls))
    assert result.exit_code == EXIT_OK, outcomes(result)
    assert all(held(world, name) == ["demo-alpine-1.0.raw.json", "demo-debian-1.0.raw.json"] for name in names)
    # Before: connected one after another (1 at once) and pushed to every target at once (4).
    assert calls.widest == {"inventory": 2, "add": 2}
    # Each image still downloaded once for all four targets.
    assert all(world.server.hits(image.path) == 1 for image in images)
    assert result.bytes_downloaded == sum(len(image.data) for image in images)


def test_an_unreachable_target_fails_alone_while_the_others_connect_at_once(world: DemoWorld) -> None:
    world.publish(demo_images())
    targets = {**directories(world, "a", "b"), "dead": dead_glance()}
    settings = config.load(world.write_config({"targets": targets}))
    calls = Calls()
    calls.pause[("a", "inventory")] = calls.pause[("b", "inventory")] = 0.5
    result = sync(settings, dry_run=False, connect=watching(calls))
    assert [(t.name, t.status) for t in result.targets] == [("a", "ok"), ("b", "ok"), ("dead", "failed")]
    assert "target dead" in (result.targets[2].error or "")
    # Before: nothing at all of the dead target in the results, so no image said what it lacks.
    assert outcomes(result) == {"a": ["add done", "add done"], "b": ["add done", "add done"],
                                "dead": ["add failed", "add failed"]}
    assert {r.error for r in result.results if r.action.target == "dead"} == {result.targets[2].error}
    assert result.exit_code == EXIT_PARTIAL
    # a and b listed at once (the dead one too, unless loading its client took longer); before: one after another.
    assert calls.widest["inventory"] >= 2


def test_a_slow_target_holds_back_neither_the_pushes_nor_the_retirements_of_another(world: DemoWorld) -> None:
    alpine, debian = demo_images("1.0")
    world.publish([alpine, debian])
    settings = config.load(world.write_config({"targets": directories(world, "fast", "slow")}))
    calls = Calls()
    assert sync(settings, dry_run=False, connect=watching(calls)).exit_code == EXIT_OK
    world.publish(demo_images("2.0")[:1])  # alpine updated, debian gone: an update and a retirement per target
    calls.order.clear()
    calls.pause[("slow", "add")] = 1.0
    result = sync(settings, dry_run=False, connect=watching(calls))
    assert result.exit_code == EXIT_OK, outcomes(result)
    assert outcomes(result) == {t: ["retire done", "update done"] for t in ("fast", "slow")}
    # The fast target was all done (pushed, old version superseded, debian retired) while the slow one was still
    # inside its add; before, every retirement waited for every target's pushes. A target's own retirement still
    # waits for its own push (invariant 3).
    assert calls.last("retire fast end") < calls.at("add slow end") < calls.last("retire slow start")


def test_past_its_deadline_a_target_starts_nothing_more_and_the_others_go_on(world: DemoWorld) -> None:
    world.publish(demo_images())
    targets = {**directories(world, "fast"), **directories(world, "slow", deadline="3s", upload_concurrency=1)}
    settings = config.load(world.write_config({"targets": targets}))
    calls = Calls()
    # The first add starts well within the deadline and outlives it: it finishes, the second never starts.
    calls.pause[("slow", "add")] = 3.5
    result = sync(settings, dry_run=False, connect=watching(calls))
    assert result.exit_code == EXIT_PARTIAL
    assert outcomes(result) == {"fast": ["add done", "add done"], "slow": ["add done", "add failed"]}
    assert [r.error for r in result.results if r.status == "failed"] == ["deadline passed"]
    assert calls.order.count("add slow start") == 1
    assert len(held(world, "fast")) == 2 and len(held(world, "slow")) == 1  # nothing half-written
    # The next run, in time, converges: only the missing image is added.
    calls.pause.clear()
    again = sync(settings, dry_run=False, connect=watching(calls))
    assert again.exit_code == EXIT_OK
    assert outcomes(again) == {"fast": ["keep done", "keep done"], "slow": ["add done", "keep done"]}


def configure_three(world: DemoWorld) -> Path:
    return world.write_config({"targets_concurrency": 2, "metrics_file": str(world.root / "imagesync.prom"),
                               "targets": {**directories(world, "a", "b"), "dead": dead_glance()}})


def test_report_metrics_and_logs_name_the_target_of_every_action_and_failure(world: DemoWorld) -> None:
    world.publish(demo_images())
    done = run("--log-format", "json", "sync", "--format", "json", config=configure_three(world))
    assert done.returncode == EXIT_PARTIAL, done.stderr
    report = json.loads(done.stdout)
    assert {a["target"] for a in report["actions"]} == {"a", "b", "dead"}
    assert {a["status"] for a in report["actions"] if a["target"] == "dead"} == {"failed"}
    assert [(t["name"], t["status"]) for t in report["targets"]] == [("a", "ok"), ("b", "ok"), ("dead", "failed")]
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(r.get("target") == "dead" and r["level"] == "error" for r in logged), done.stderr
    assert all("target" in r for r in logged if r.get("action")), done.stderr
    text = (world.root / "imagesync.prom").read_text()
    ok = {s.labels["target"]: s.value for family in text_string_to_metric_families(text) for s in family.samples
          if s.name == "imagesync_target_ok"}
    assert ok == {"a": 1, "b": 1, "dead": 0}


def test_sync_target_still_syncs_only_that_target(world: DemoWorld) -> None:
    world.publish(demo_images())
    done = run("sync", "--target", "b", "--format", "json", config=configure_three(world))
    assert done.returncode == EXIT_OK, done.stderr
    report = json.loads(done.stdout)
    assert {a["target"] for a in report["actions"]} == {"b"}
    assert [t["name"] for t in report["targets"]] == ["b"]
    assert held(world, "b") == ["demo-alpine-1.0.raw.json", "demo-debian-1.0.raw.json"] and held(world, "a") == []


def test_two_glance_projects_are_synced_at_once_from_one_download(devcloud: DevCloud, world: DemoWorld) -> None:
    sites = devcloud.require_vos(2)[:2]
    tag = f"imagesync-{uuid.uuid4().hex[:8]}"
    (alpine, _) = demo_images()
    world.publish([alpine])
    targets = {site: {"driver": "glance", "visibility": "private", "tag": tag, "region": devcloud.region,
                      "auth": devcloud.password_auth(devcloud.vo_users[site])} for site in sites}
    settings = config.load(world.write_config({"targets_concurrency": 2, "targets": targets}))
    calls = Calls()
    # The listings surely overlap if they run at once, while the two token requests do not: the dev cloud's
    # Keystone keeps its tokens in SQLite, which answers two simultaneous writes with a 500 ("database is
    # locked"), a thing of the dev cloud, not of a site's Keystone.
    calls.linger[(sites[0], "inventory")] = 1.0
    calls.pause[(sites[1], "inventory")] = 0.5
    try:
        result = sync(settings, dry_run=False, connect=watching(calls))
        assert result.exit_code == EXIT_OK, (result.targets, outcomes(result))
        assert outcomes(result) == {site: ["add done"] for site in sites}
        for site in sites:
            (image,) = devcloud.glance(devcloud.vo_users[site]).images.list(filters={"tag": [tag]})
            assert image["os_hash_value"] == hashlib.sha512(alpine.data).hexdigest()
        assert calls.widest["inventory"] == 2  # before: one project after the other
        assert world.server.hits(alpine.path) == 1 and result.bytes_downloaded == len(alpine.data)
    finally:
        for site in sites:
            glance = devcloud.glance(devcloud.vo_users[site])
            for image in list(glance.images.list(filters={"tag": [tag]})):
                glance.images.delete(image["id"])
