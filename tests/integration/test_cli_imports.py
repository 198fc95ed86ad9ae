"""Each command imports only what it needs: the real CLI in a fresh interpreter, its sys.modules read at exit.

Start-up is most of a command that has little to do (``--version``, a ``plan`` of nothing new, a no-op ``sync``,
run by cron every few hours on every site), and glanceclient, keystoneauth1, prometheus_client, cryptography and
requests are the bulk of it.
"""

from __future__ import annotations

from pathlib import Path

from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK
from tests.support.imports import Imported, imported_by

CLOUD = frozenset({"glanceclient", "keystoneauth1"})
HEAVY = CLOUD | {"prometheus_client", "cryptography", "asn1crypto", "gnupg", "yaml", "requests", "urllib3",
                 "sqlite3"}
# What a sync needs beyond the lists: the executor and what it drives.
RUN_MACHINERY = frozenset({"imagesync.run.execute", "imagesync.images.download", "imagesync.images.convert",
                           "imagesync.run.pipeline"})


def _config(world: DemoWorld, tmp_path: Path, *, metrics: bool) -> Path:
    # A Glance target beside the directory: commands that never reach a target must not load its driver either.
    auth = {"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "p", "project_name": "p",
            "user_domain_name": "Default", "project_domain_name": "Default"}
    glance = {"driver": "glance", "visibility": "private", "auth": auth}
    targets = {"archive": {"driver": "directory", "path": str(world.root / "archive")}, "cloud": glance}
    extra: dict[str, object] = {"targets": targets}
    if metrics:
        extra["metrics_file"] = str(tmp_path / "imagesync.prom")
    return world.write_config(extra)


def _ok(run: Imported) -> Imported:
    assert run.returncode == EXIT_OK, run.stdout + run.stderr
    return run


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    run = _ok(imported_by("--version", report=tmp_path / "modules.json"))
    assert run.stdout.startswith("imagesync ")
    assert run.packages() & HEAVY == set()


def test_lists_loads_no_target_state_or_metrics_code(world: DemoWorld, tmp_path: Path) -> None:
    world.publish(demo_images())
    config = _config(world, tmp_path, metrics=True)
    run = _ok(imported_by("--config", str(config), "lists", report=tmp_path / "modules.json"))
    assert run.stdout.startswith("demo: OK "), run.stdout
    assert "cryptography" in run.packages()  # it did verify the S/MIME signature
    assert run.packages() & (CLOUD | {"prometheus_client"}) == set()
    assert run.modules & RUN_MACHINERY == set()


def test_a_plan_into_a_directory_loads_no_cloud_or_metrics_code(world: DemoWorld, tmp_path: Path) -> None:
    world.publish(demo_images())
    config = _config(world, tmp_path, metrics=True)
    run = _ok(imported_by("--config", str(config), "plan", "--target", "archive", report=tmp_path / "modules.json"))
    assert "add" in run.stdout, run.stdout
    assert run.packages() & (CLOUD | {"prometheus_client"}) == set()


def test_only_a_run_that_writes_metrics_imports_prometheus_client(world: DemoWorld, tmp_path: Path) -> None:
    world.publish(demo_images())
    without = _ok(imported_by("--config", str(_config(world, tmp_path, metrics=False)), "sync", "--target",
                              "archive", report=tmp_path / "without.json"))
    assert "prometheus_client" not in without.packages()
    with_metrics = _ok(imported_by("--config", str(_config(world, tmp_path, metrics=True)), "sync", "--target",
                                   "archive", report=tmp_path / "with.json"))
    assert "prometheus_client" in with_metrics.packages()
    assert (tmp_path / "imagesync.prom").is_file()
