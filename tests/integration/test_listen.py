"""``imagesync listen`` as a process: a real HTTP endpoint, a real HTTPS list server with a signed list, a real
directory target and state. What a request changes, and what it must not (issue 12)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from imagesync.demo.server import Fault
from imagesync.demo.world import LIST_PATH, DemoWorld, demo_images
from imagesync.listen.queue import Queue
from imagesync.run import lock
from imagesync.state.store import StateStore
from tests.support.cli import run
from tests.support.listening import SECRET, Listener, listen_config

SYNC = json.dumps({"source": "demo"}).encode()


def configure(world: DemoWorld, **pace: object) -> Path:
    return world.write_config({"targets": {"arch": {"driver": "directory", "path": str(world.root / "arch")}},
                               **listen_config(world.root, **pace)})


def held(world: DemoWorld) -> list[str]:
    return sorted(p.name for p in (world.root / "arch").rglob("*.raw"))


def runs(world: DemoWorld) -> int:
    if not (world.root / "state" / "state.db").exists():
        return 0
    with StateStore.open(world.root / "state") as store:
        return len(store.last_runs(1000))


def test_forged_unsigned_oversized_and_malformed_requests_change_nothing(world: DemoWorld) -> None:
    world.publish(demo_images())
    with Listener(configure(world, debounce=1, max_wait=2, max_body=1024)) as listener:
        assert listener.post("/v1/sync", SYNC, sign=False)[0] == 401
        assert listener.post("/v1/sync", SYNC, sign=False, headers={"X-Imagesync-Signature": "sha256=" + "0" * 64},
                             )[0] == 401
        assert listener.post("/v1/sync", SYNC, sign=False, headers={"Authorization": "Bearer guessed"})[0] == 401
        status, answer = listener.post("/v1/sync", b'{"source": "demo", "pad": "' + b"x" * 2000 + b'"}')
        assert (status, answer["error"]) == (413, "body of 2029 bytes is larger than max_body (1024)")
        assert listener.post("/v1/sync", b'{"source": ')[0] == 400
        assert listener.post("/v1/events/registry", b'{"events": 3}')[0] == 400
        assert listener.post("/v1/sync", json.dumps({"source": "nope"}).encode())[0] == 404
        assert listener.post("/v1/nothing", SYNC)[0] == 404
        time.sleep(3)  # past max_wait: anything queued would have run by now
        assert listener.health() == {"status": "ok", "waiting": [], "running": [], "last_run": None}
    assert held(world) == [] and runs(world) == 0
    assert SECRET not in listener.log()
    assert "refused 401: not authenticated" in listener.log()


def test_a_burst_of_twenty_requests_is_one_sync_of_the_list(world: DemoWorld) -> None:
    world.publish(demo_images())
    with Listener(configure(world, debounce=2, max_wait=30)) as listener:
        for _ in range(20):
            assert listener.post("/v1/sync", SYNC, sign=False, headers={"Authorization": f"Bearer {SECRET}"}) == (
                202, {"queued": ["demo"]})
        [finished] = listener.wait_for_run()
        assert "sources=demo finished exit=0" in finished
        time.sleep(3)  # nothing more comes of the burst
        assert len(listener.finished()) == 1
        health = listener.health()
    assert held(world) == ["demo-alpine-1.0.raw", "demo-debian-1.0.raw"] and runs(world) == 1
    assert health["waiting"] == [] and health["last_run"]["sources"] == ["demo"]


def test_a_busy_lock_delays_the_sync_and_loses_nothing(world: DemoWorld) -> None:
    world.publish(demo_images())
    with Listener(configure(world, debounce=1, max_wait=2)) as listener:
        with lock.acquire(world.root / "state"):  # a cron run in progress
            assert listener.sync("demo")[0] == 202
            time.sleep(3)
            assert listener.health()["waiting"] == ["demo"] and held(world) == []
        listener.wait_for_run(timeout=30)
    assert held(world) == ["demo-alpine-1.0.raw", "demo-debian-1.0.raw"]
    assert "wait: another imagesync run holds" in listener.log()


def test_a_restart_of_listen_forgets_no_queued_source(world: DemoWorld) -> None:
    world.publish(demo_images())
    config = configure(world, debounce=60, max_wait=120)
    with Listener(config) as listener:
        assert listener.sync("demo")[0] == 202
    assert listener.stop() == 0 and held(world) == []
    queue = Queue(world.root / "state", limit=10)
    assert [w.source for w in queue.waiting()] == ["demo"]
    queue.close()
    data = yaml.safe_load(config.read_text())
    data["listen"].update(debounce=1, max_wait=2)
    config.write_text(yaml.safe_dump(data))
    with Listener(config) as again:
        again.wait_for_run()
    assert held(world) == ["demo-alpine-1.0.raw", "demo-debian-1.0.raw"]
    assert "1 source(s) waiting from before" in again.log()


def test_the_readmes_signed_request_is_accepted(world: DemoWorld, tmp_path: Path) -> None:
    """The README's curl example, run by bash as written: only the secret file's path, the source name and the URL
    are pointed at this test's listener."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Syncs on events"):]
    script = section[section.index("```sh\nbody=") + 6:]
    script = script[:script.index("```")]
    world.publish(demo_images())
    with Listener(configure(world, debounce=1, max_wait=2)) as listener:
        script = (script.replace("/etc/imagesync/listen.secret", str(world.root / "listen.secret"))
                  .replace("egi-fedcloud", "demo").replace("http://127.0.0.1:8780", listener.url))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, check=False,
                              timeout=60)
        assert (done.returncode, json.loads(done.stdout)) == (0, {"queued": ["demo"]}), done.stderr
        listener.wait_for_run()
    assert held(world) == ["demo-alpine-1.0.raw", "demo-debian-1.0.raw"]


def test_sigterm_during_a_sync_abandons_it_safely_and_keeps_its_source_queued(world: DemoWorld) -> None:
    alpine, debian = demo_images()
    world.publish([alpine, debian])
    world.server.inject(debian.path, Fault.stall(60))  # the headers, then a minute of silence: a sync under way
    config = configure(world, debounce=1, max_wait=2)
    with Listener(config) as listener:
        assert listener.sync("demo")[0] == 202
        deadline = time.monotonic() + 30
        while world.server.hits(debian.path) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listener.health()["running"] == ["demo"]
        assert listener.stop() == 0
    assert "abandoned the sync under way" in listener.log() or "leaving it now" in listener.log(), listener.log()
    with lock.acquire(world.root / "state"):
        pass  # the lock went with the process
    queue = Queue(world.root / "state", limit=10)
    assert [w.source for w in queue.waiting()] == ["demo"]
    queue.close()
    # The next run converges (invariant 4): both images, nothing half-written.
    done = run("sync", config=config)
    assert done.returncode == 0, done.stderr
    assert held(world) == ["demo-alpine-1.0.raw", "demo-debian-1.0.raw"]
    assert not [p for p in (world.root / "arch").rglob("*") if p.name.startswith(".")]


def test_a_failed_sync_is_in_the_metrics_and_hooks_and_the_endpoint_stays_up(world: DemoWorld) -> None:
    world.publish(demo_images())
    for _ in range(3):  # the list server fails the first sync, retries included
        world.server.inject("/" + LIST_PATH.lstrip("/"), Fault.status(503))
    finished = world.root / "run-finished.json"
    config = world.write_config({
        "targets": {"arch": {"driver": "directory", "path": str(world.root / "arch")}},
        "metrics_file": str(world.root / "imagesync.prom"),
        "hooks": {"run-finished": ["sh", "-c", f"cat > {finished}"]},
        **listen_config(world.root, debounce=1, max_wait=2)})
    with Listener(config) as listener:
        assert listener.sync("demo")[0] == 202
        assert "exit=3" in listener.wait_for_run()[0]
        assert "imagesync_exit_code 3.0" in (world.root / "imagesync.prom").read_text()
        assert json.loads(finished.read_text())["exit_code"] == 3
        health = listener.health()
        assert (health["status"], health["waiting"]) == ("ok", ["demo"])  # to be tried again, later
        assert listener.sync("demo")[0] == 202  # a new event ends the retry's pause
        assert "exit=0" in listener.wait_for_run(count=2)[1]
    assert held(world) == ["demo-alpine-1.0.raw", "demo-debian-1.0.raw"]
    assert "imagesync_exit_code 0.0" in (world.root / "imagesync.prom").read_text()
    assert json.loads(finished.read_text())["exit_code"] == 0
    assert "list=demo" in listener.log() and "503" in listener.log()


def test_a_harbor_webhook_syncs_the_registry_following_its_project_and_nothing_else(world: DemoWorld) -> None:
    """The real endpoint and runner with a Harbor-shaped webhook (tests/unit/test_listen_events.py has the shapes).
    The Harbor behind the registry source is a closed port: the run it starts fails, which is not this test's
    point; that it runs, for that source alone, is."""
    world.publish(demo_images())
    registry = {"url": "https://127.0.0.1:9", "harbor_project": "egi_vm_images", "signature": "none",
                "vo": "demo.vo"}
    config = world.write_config({"targets": {"arch": {"driver": "directory", "path": str(world.root / "arch")}},
                                 "registries": {"egi": registry}, **listen_config(world.root, debounce=1, max_wait=2)})
    hook: dict[str, Any] = {"type": "PUSH_ARTIFACT", "occur_at": 1764460800, "operator": "robot$ci", "event_data": {
        "resources": [{"digest": "sha256:" + "a" * 64, "tag": "24.04",
                       "resource_url": "127.0.0.1:9/egi_vm_images/ubuntu:24.04"}],
        "repository": {"name": "ubuntu", "namespace": "egi_vm_images", "repo_full_name": "egi_vm_images/ubuntu",
                       "repo_type": "public"}}}
    other = {**hook, "event_data": {**hook["event_data"], "repository": {"repo_full_name": "other/ubuntu"}}}
    with Listener(config) as listener:
        body = json.dumps(hook).encode()
        assert listener.post("/v1/events/harbor", body, sign=False, headers={"Authorization": f"Bearer {SECRET}"},
                             ) == (202, {"queued": ["egi"]})
        assert listener.post("/v1/events/harbor", json.dumps(other).encode()) == (200, {"queued": []})
        assert "listen sync sources=egi finished exit=" in listener.wait_for_run()[0]
    assert held(world) == []  # the list was not part of that run


def test_listen_without_its_section_says_what_to_configure(world: DemoWorld) -> None:
    done = run("listen", config=world.write_config(
        {"targets": {"arch": {"driver": "directory", "path": str(world.root / "arch")}}}))
    assert done.returncode == 2
    assert "listen: not configured (give at least listen.secret_file)" in done.stderr
