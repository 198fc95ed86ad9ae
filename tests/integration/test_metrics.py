"""The node_exporter textfile (``metrics_file``) after real CLI runs against the demo world, read back with
prometheus_client's own parser, and the inputs of the README's three alert rules evaluated on it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from imagesync.demo.world import LIST_PATH, DemoWorld, demo_images
from tests.support.cli import run

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SIGNER = "/DC=org/DC=imagesync-demo/O=Hosts/CN=lists.demo.invalid"
IMAGE_BYTES = 65536  # each demo image


def configure(world: DemoWorld, **lists: object) -> Path:
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}},
                               "metrics_file": "textfile/imagesync.prom"})
    if lists:
        data = yaml.safe_load(path.read_text())
        data["lists"].update(lists)
        path.write_text(yaml.safe_dump(data))
    return path


def prom(world: DemoWorld) -> Path:
    return world.root / "textfile" / "imagesync.prom"


def samples(world: DemoWorld) -> Samples:
    text = prom(world).read_text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def tamper(world: DemoWorld, signed: bytes) -> None:
    world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))


def test_a_good_run(world: DemoWorld) -> None:
    created = datetime.now(UTC).replace(microsecond=0)
    world.publish(demo_images(), created=created)
    before = time.time()
    result = run("sync", config=configure(world))
    assert result.returncode == 0, result.stdout + result.stderr
    found = samples(world)
    last_run = value(found, "imagesync_last_run_timestamp_seconds")
    assert before - 1 <= last_run <= time.time() + 1
    assert value(found, "imagesync_last_success_timestamp_seconds") == last_run
    assert 0 <= value(found, "imagesync_run_duration_seconds") <= time.time() - before
    assert value(found, "imagesync_exit_code") == 0
    assert value(found, "imagesync_list_ok", list="demo") == 1
    assert value(found, "imagesync_list_expiry_timestamp_seconds", list="demo") == \
        (created + timedelta(days=30)).timestamp()
    assert value(found, "imagesync_list_images", list="demo") == 2
    assert value(found, "imagesync_list_info", list="demo", signature="smime", signer=SIGNER,
                 signer_ca="/DC=org/DC=imagesync-demo/CN=imagesync Demo CA") == 1
    assert value(found, "imagesync_images", target="archive", state="active") == 2
    assert value(found, "imagesync_images", target="archive", state="failed") == 0
    assert value(found, "imagesync_actions_total", kind="add", result="done") == 2
    assert value(found, "imagesync_actions_total", kind="add", result="failed") == 0
    assert value(found, "imagesync_bytes_downloaded_total") == 2 * IMAGE_BYTES
    assert value(found, "imagesync_bytes_uploaded_total") == 2 * IMAGE_BYTES
    assert [p.name for p in prom(world).parent.iterdir()] == ["imagesync.prom"]  # no temp file left behind
    assert prom(world).stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user


def test_counters_accumulate_over_runs(world: DemoWorld) -> None:
    world.publish(demo_images())
    config = configure(world)
    assert run("sync", config=config).returncode == 0
    world.publish(demo_images("2.0"))
    again = run("sync", config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    found = samples(world)
    assert value(found, "imagesync_actions_total", kind="add", result="done") == 2
    assert value(found, "imagesync_actions_total", kind="update", result="done") == 2
    assert value(found, "imagesync_bytes_downloaded_total") == 4 * IMAGE_BYTES
    assert value(found, "imagesync_images", target="archive", state="active") == 2
    assert value(found, "imagesync_images", target="archive", state="retired") == 2


def test_a_failed_run_keeps_the_last_success_and_the_three_alerts_see_it(world: DemoWorld) -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    signed = world.publish(demo_images(), fields={"dc:date:expires": soon.strftime("%Y-%m-%dT%H:%M:%SZ")})
    config = configure(world)
    assert run("sync", config=config).returncode == 0
    success = value(samples(world), "imagesync_last_success_timestamp_seconds")
    tamper(world, signed)
    failed = run("sync", config=config)
    assert failed.returncode == 3, failed.stdout + failed.stderr  # the only list failed: nothing could be done
    found = samples(world)
    assert value(found, "imagesync_exit_code") == 3
    assert value(found, "imagesync_last_run_timestamp_seconds") > success
    assert value(found, "imagesync_last_success_timestamp_seconds") == success
    assert value(found, "imagesync_list_ok", list="demo") == 0
    assert value(found, "imagesync_actions_total", kind="add", result="done") == 2  # carried over
    # The README's alert rules, evaluated as Prometheus would at this moment:
    now = time.time()
    no_success_in_12h = now - value(found, "imagesync_last_success_timestamp_seconds") > 12 * 3600
    expiring_within_7d = [labels for (name, labels), v in found.items()
                          if name == "imagesync_list_expiry_timestamp_seconds" and v - now < 7 * 86400]
    failed_lists = [labels for (name, labels), v in found.items() if name == "imagesync_list_ok" and v == 0]
    assert not no_success_in_12h
    assert expiring_within_7d == [frozenset({("list", "demo")})]  # the last accepted copy's expiry is kept
    assert failed_lists == [frozenset({("list", "demo")})]
    assert readme_alert_inputs() <= {name for name, _ in found}


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_alert_inputs() -> set[str]:
    """The metrics the README's alert rules read (the YAML block of Prometheus rule groups)."""
    blocks = re.findall(r"```yaml\n(groups:.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "one block of alert rules in the README"
    rules = yaml.safe_load(blocks[0])["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == ["ImagesyncNoSuccess", "ImagesyncListExpiringSoon",
                                                  "ImagesyncListFailed"]
    return {name for rule in rules for name in re.findall(r"imagesync_\w+", rule["expr"])}


def test_without_the_previous_file_the_last_success_comes_from_the_state(world: DemoWorld) -> None:
    signed = world.publish(demo_images())
    config = configure(world)
    assert run("sync", config=config).returncode == 0
    success = value(samples(world), "imagesync_last_success_timestamp_seconds")
    prom(world).unlink()
    tamper(world, signed)
    assert run("sync", config=config).returncode == 3
    assert value(samples(world), "imagesync_last_success_timestamp_seconds") == pytest.approx(success, abs=1e-3)


def test_a_partial_failure_and_a_list_never_accepted(world: DemoWorld) -> None:
    signed = world.publish(demo_images())
    world.server.put("/public/tampered.list", signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
    result = run("sync", config=configure(world, bad={"url": world.server.url("/public/tampered.list")}))
    assert result.returncode == 1, result.stdout + result.stderr
    found = samples(world)
    assert value(found, "imagesync_exit_code") == 1
    assert value(found, "imagesync_last_success_timestamp_seconds") == 0  # never succeeded: the alert fires
    assert (value(found, "imagesync_list_ok", list="bad"), value(found, "imagesync_list_ok", list="demo")) == (0, 1)
    assert ("imagesync_list_expiry_timestamp_seconds", frozenset({("list", "bad")})) not in found


def test_dry_runs_leave_the_file_alone(world: DemoWorld) -> None:
    world.publish(demo_images())
    config = configure(world)
    assert run("plan", config=config).returncode == 0
    assert not prom(world).exists()
    assert run("sync", config=config).returncode == 0
    written = prom(world).read_bytes()
    world.publish(demo_images("2.0"))
    for args in (("plan",), ("sync", "--dry-run")):
        result = run(*args, config=config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert prom(world).read_bytes() == written


def test_a_metrics_file_that_cannot_be_written_fails_the_run_loudly(world: DemoWorld) -> None:
    world.publish(demo_images())
    config = configure(world)
    (world.root / "textfile").write_text("a file where the directory should be")
    result = run("-q", "sync", config=config)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert " ERROR " in line and "metrics" in line and "textfile/imagesync.prom" in line
    assert (world.root / "archive" / "demo" / "demo-alpine-1.0.raw").exists()  # the sync itself was done
