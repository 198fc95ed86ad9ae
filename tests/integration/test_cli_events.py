"""Events of whole runs through the real CLI (a subprocess) against the demo world: which hooks fire when, what
they receive, that their failures leave the exit code alone, that dry runs and locked-out runs fire nothing, and
a signed webhook over HTTPS trusted through the demo CA directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.config import settings as configuration
from imagesync.demo import pki
from imagesync.demo.world import LIST_PATH, DemoImage, DemoWorld, demo_images
from imagesync.run import lock, pipeline
from imagesync.run.execute import ActionResult
from imagesync.sources.base import SourceOutcome
from tests.devcloud.fixture import DevCloud
from tests.support.cli import run as run_cli
from tests.support.hookscript import calls, recorder
from tests.support.receiver import Receiver

EVENTS = ("list-failed", "image-added", "image-updated", "image-retired", "run-finished")
PASSWORD = "os-password-never-for-hooks"


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    # A secret in the environment that no hook may ever see.
    return run_cli(*args, config=config, env={**os.environ, "OS_PASSWORD": PASSWORD})


def configure(world: DemoWorld, **extra: object) -> Path:
    return world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}},
                               **extra})


def every_event(world: DemoWorld) -> tuple[dict[str, list[str]], Path]:
    argv, out = recorder(world.root)
    return {event: [*argv, event] for event in EVENTS}, out


def summary(recorded: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for call in recorded:
        doc = json.loads(call["stdin"])
        assert call["argv"] == [doc["kind"]]
        assert call["env"]["IMAGESYNC_EVENT_KIND"] == doc["kind"]
        if doc["kind"] == "run-finished":
            found.append((doc["kind"], str(doc["exit_code"])))
        else:
            found.append((doc["kind"], doc.get("image") or doc["list"], doc["result"]))
    return found


def test_each_action_as_it_completes_then_the_end_of_the_run(world: DemoWorld) -> None:
    hooks, out = every_event(world)
    world.publish(demo_images("1.0"))
    config = configure(world, hooks=hooks)
    first = run("sync", config=config)
    assert first.returncode == 0, first.stderr
    # Images are pushed as their downloads finish: the events come in the order the adds completed.
    assert sorted(summary(calls(out))[:2]) == [("image-added", "demo-alpine", "done"),
                                               ("image-added", "demo-debian", "done")]
    assert summary(calls(out))[2:] == [("run-finished", "0")]
    alpine = next(c for c in calls(out) if json.loads(c["stdin"]).get("image") == "demo-alpine")
    added = json.loads(alpine["stdin"])
    assert {k: added[k] for k in ("list", "version", "target", "target_id", "vo", "error")} == {
        "list": "demo", "version": "1.0", "target": "archive", "target_id": "demo/demo-alpine-1.0.raw",
        "vo": "demo.vo", "error": None}
    env = alpine["env"]
    assert (env["IMAGESYNC_EVENT_IMAGE"], env["IMAGESYNC_EVENT_VERSION"], env["IMAGESYNC_EVENT_TARGET"]) == (
        "demo-alpine", "1.0", "archive")
    finished = json.loads(calls(out)[2]["stdin"])
    assert finished["summary"]["add"] == 2 and finished["lists"][0]["status"] == "ok"

    out.unlink()
    world.publish([demo_images("2.0")[0]])  # alpine updated, debian gone from the list
    second = run("sync", config=config)
    assert second.returncode == 0, second.stderr
    assert sorted(summary(calls(out))[:2]) == [("image-retired", "demo-debian", "done"),
                                               ("image-updated", "demo-alpine", "done")]
    assert summary(calls(out))[2:] == [("run-finished", "0")]
    updated = next(json.loads(c["stdin"]) for c in calls(out) if c["argv"] == ["image-updated"])
    assert updated["supersedes"] == ["demo/demo-alpine-1.0.raw"]
    # Neither the list's token nor imagesync's own environment secrets reach a hook.
    for call in calls(out):
        text = json.dumps(call)
        assert world.token not in text and PASSWORD not in text


class Witness:
    """A run observer noting, for each thing it is told, whether the run still held its lock at that moment."""

    def __init__(self, lock_file: Path) -> None:
        self.lock_file = lock_file
        self.seen: list[tuple[str, bool]] = []

    def _held(self) -> bool:
        return self.lock_file.exists() and self.lock_file.stat().st_size > 0  # emptied on release

    def lists_loaded(self, outcomes: list[SourceOutcome]) -> None:
        self.seen.append(("lists", self._held()))

    def action_done(self, result: ActionResult) -> None:
        self.seen.append((f"{result.action.kind} {result.action.identifier}", self._held()))

    def finish(self, result: pipeline.SyncResult, store: object) -> None:
        self.seen.append(("finish", self._held()))


def test_the_run_reports_each_action_while_it_is_still_running(world: DemoWorld) -> None:
    world.publish(demo_images())
    settings = configuration.load(configure(world))
    witness = Witness(world.root / "state" / "lock")
    pipeline.sync(settings, dry_run=False, observer=witness, finish=witness.finish)
    assert witness.seen[0] == ("lists", True) and witness.seen[-1] == ("finish", True)
    assert sorted(witness.seen[1:-1]) == [("add demo-alpine", True), ("add demo-debian", True)]  # as they finish
    dry = Witness(world.root / "state" / "lock")
    pipeline.sync(settings, dry_run=True, observer=dry, finish=dry.finish)
    assert dry.seen == [("finish", False)]  # a dry run tells observers nothing (and takes no lock)


def test_a_failed_list_notifies_and_the_run_says_nothing_was_done(world: DemoWorld) -> None:
    hooks, out = every_event(world)
    signed = world.publish(demo_images())
    world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
    result = run("sync", config=configure(world, hooks=hooks))
    assert result.returncode == 3, result.stderr
    assert summary(calls(out)) == [("list-failed", "demo", "failed"), ("run-finished", "3")]
    failed = json.loads(calls(out)[0]["stdin"])
    assert "tampered" in failed["error"] and failed["url"] == world.list_url and failed["expired"] is False
    assert world.token not in json.dumps(calls(out))


def test_failing_hooks_are_logged_and_leave_the_exit_code_alone(world: DemoWorld) -> None:
    world.publish(demo_images())
    hooks = {"image-added": [str(world.root / "no-such-notifier"), "--x"],
             "run-finished": [sys.executable, "-c", "import sys; sys.exit('notifier down')"]}
    result = run("sync", config=configure(world, hooks=hooks))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    missing = [line for line in lines if "hook cannot start" in line]
    assert len(missing) == 2 and all(" ERROR " in line and "event=image-added" in line for line in missing)
    (failed,) = [line for line in lines if "hook failed" in line]
    assert " WARNING " in failed and "event=run-finished" in failed and 'error="exit status 1: notifier down"' in failed


def test_a_hook_too_slow_is_cut_at_hook_timeout(world: DemoWorld) -> None:
    world.publish(demo_images())
    result = run("sync", config=configure(world, hooks={"run-finished": ["sleep", "60"]}, hook_timeout=1))
    assert result.returncode == 0, result.stderr
    assert "hook timed out hook=sleep event=run-finished result=failed" in result.stderr


@pytest.mark.parametrize("args", [("plan",), ("sync", "--dry-run")])
def test_a_dry_run_fires_nothing(world: DemoWorld, args: tuple[str, ...]) -> None:
    hooks, out = every_event(world)
    world.publish(demo_images())
    result = run(*args, config=configure(world, hooks=hooks))
    assert result.returncode == 0, result.stderr
    assert calls(out) == []


def test_a_run_that_stops_early_still_says_so(world: DemoWorld) -> None:
    hooks, out = every_event(world)
    world.publish(demo_images())
    config = configure(world, hooks=hooks)
    (world.root / "state").mkdir()
    (world.root / "state" / "state.db").write_bytes(b"this is not SQLite" * 100)
    result = run("sync", config=config)
    assert result.returncode == 3, result.stderr
    (call,) = calls(out)
    doc = json.loads(call["stdin"])
    assert (doc["kind"], doc["exit_code"], doc["result"], doc["summary"]) == ("run-finished", 3, "error", None)
    assert "state.db" in doc["error"] and call["env"]["IMAGESYNC_EVENT_ERROR"] == doc["error"]


def test_a_run_turned_away_by_the_lock_fires_nothing(world: DemoWorld) -> None:
    hooks, out = every_event(world)
    world.publish(demo_images())
    config = configure(world, hooks=hooks)
    (world.root / "state").mkdir()
    with lock.acquire(world.root / "state"):
        result = run("sync", config=config)
    assert result.returncode == 75, result.stderr
    assert calls(out) == []


def test_a_signed_webhook_over_https_trusted_through_the_ca_directory(world: DemoWorld) -> None:
    world.publish(demo_images())
    (world.root / "webhook.secret").write_text("webhook-hmac-secret\n")
    server = pki.make_server_credential(world.ca)
    with Receiver(503, cert_pem=server.cert_pem, key_pem=server.key_pem) as receiver:
        webhooks = [{"url": receiver.url(), "secret_file": "webhook.secret",
                     "events": ["image-added", "run-finished"]}]
        config = configure(world, webhooks=webhooks)
        data = yaml.safe_load(config.read_text())
        assert data["trust"]["ca_dir"] == str(world.ca_dir)
        result = run("-q", "sync", config=config)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    kinds = [json.loads(d.body)["kind"] for d in receiver.deliveries]
    assert kinds == ["image-added", "image-added", "image-added", "run-finished"]  # the first answer was a 503
    assert receiver.deliveries[0].body == receiver.deliveries[1].body
    assert all(d.signed_with("webhook-hmac-secret") for d in receiver.deliveries)
    assert all(b"webhook-hmac-secret" not in d.body and world.token.encode() not in d.body
               for d in receiver.deliveries)


def test_an_image_bound_to_fail_is_notified_as_a_failed_add(vo_access: DevCloud, world: DemoWorld) -> None:
    alpine, debian = demo_images()
    world.publish([alpine, DemoImage(debian.identifier, debian.version, debian.title, debian.data, vo="unmapped.vo")])
    mapping = world.root / "mapping.json"
    mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"}}))
    tag = f"imagesync-{uuid.uuid4().hex[:8]}"
    hooks, out = every_event(world)
    target = {"driver": "glance", "region": vo_access.region, "visibility": "shared", "projects_file": str(mapping),
              "tag": tag, "auth": vo_access.password_auth()}
    try:
        result = run("sync", config=world.write_config({"targets": {"cloud": target}, "hooks": hooks}))
    finally:
        glance = vo_access.glance()
        for image in glance.images.list(filters={"tag": [tag]}):
            glance.images.delete(image["id"])
    assert result.returncode == 1, result.stderr
    # The unmapped one is known to fail before anything is downloaded: its event comes first.
    assert summary(calls(out)) == [("image-added", "demo-debian", "failed"), ("image-added", "demo-alpine", "done"),
                                   ("run-finished", "1")]
    assert "unmapped.vo" in json.loads(calls(out)[0]["stdin"])["error"]
