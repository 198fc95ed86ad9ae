"""The local demo: a signed list served over HTTPS on 127.0.0.1, synced into a directory by the real code.

Three rounds show add, then update and retire, then what a tampered list does (nothing is retired).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imagesync import config, report
from imagesync.demo.world import LIST_PATH, DemoWorld, as_qcow2, build, demo_images
from imagesync.drivers import base as drivers
from imagesync.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, ImagesyncError
from imagesync.pipeline import SyncResult, sync


def run_demo(*, echo: Callable[[str], None], glance: bool = False) -> int:
    """Run the demo in a temporary directory; return the exit code.

    With ``glance`` the target is the Glance of the OS_* environment or, without OS_AUTH_URL, the dev cloud of a
    source checkout (started for the demo). Raises ConversionError without qemu-img, ImagesyncError without a cloud.
    """
    with tempfile.TemporaryDirectory(prefix="imagesync-demo-") as tmp, build(Path(tmp)) as world, \
            _target(Path(tmp), glance) as (target_name, target):
        alpine, debian = demo_images("1.0")
        signed = world.publish([as_qcow2(alpine, world.root), debian])
        settings = config.load(world.write_config({"targets": {target_name: target}}))
        echo(f"imagesync demo, all on 127.0.0.1, in {tmp}")
        echo(f"  CA directory {world.ca_dir} (ephemeral CA with CRL; crl: require)")
        echo(f"  signed list  {world.list_url} (HTTPS, AppDB-style token required)")
        echo(f"  target       {target_name}: {_describe(target)}")
        first = _round(echo, "1. first sync: both images are new", settings, world)
        world.publish([as_qcow2(demo_images("2.0")[0], world.root)])
        second = _round(echo, "2. the publisher releases Demo Alpine 2.0 and withdraws Demo Debian", settings, world)
        world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
        third = _round(echo, "3. someone serves an old list with one byte changed: it is refused and nothing is "
                       "retired", settings, world)
        good = (first.exit_code, second.exit_code, third.exit_code) == (EXIT_OK, EXIT_OK, EXIT_NOTHING_DONE)
        return EXIT_OK if good else EXIT_PARTIAL


def _round(echo: Callable[[str], None], title: str, settings: config.Settings, world: DemoWorld) -> SyncResult:
    echo(f"\n{title}\n$ imagesync sync")
    result = sync(settings, dry_run=False)
    echo(report.sync_text(result))
    target = settings.targets[0]
    driver = drivers.load(target)
    try:
        held = sorted(f"{h.list_name}/{h.identifier} {h.version} ({'active' if h.active else 'retired'}) {h.target_id}"
                      for h in driver.inventory())
    finally:
        driver.close()
    echo("target now holds:\n" + "\n".join(f"  {line}" for line in held))
    return result


def _describe(target: dict[str, object]) -> str:
    if target["driver"] == "directory":
        return f"directory {target['path']} (accepts qcow2, raw)"
    return f"Glance, tag {target['tag']}, visibility {target['visibility']}"


@contextmanager
def _target(root: Path, glance: bool) -> Iterator[tuple[str, dict[str, object]]]:
    if not glance:
        yield "archive", {"driver": "directory", "path": str(root / "archive")}
        return
    tag = f"imagesync-demo-{root.name[-8:]}"
    target: dict[str, object] = {"driver": "glance", "tag": tag, "visibility": "private"}
    if os.environ.get("OS_AUTH_URL"):
        yield "cloud", target
        return
    with _dev_cloud(root) as auth:
        yield "cloud", {**target, "auth": auth}


@contextmanager
def _dev_cloud(root: Path) -> Iterator[dict[str, str]]:
    script = Path(__file__).resolve().parents[2] / "tests" / "devcloud" / "devcloud.py"
    if not script.is_file():
        raise ImagesyncError("no OS_AUTH_URL and no dev cloud (tests/devcloud of a source checkout)",
                             subject="demo --glance", hint="source an openrc, or run from a source checkout")
    run_dir = root / "devcloud"
    for command in (["install"], ["start", "--dir", str(run_dir)]):
        subprocess.run([sys.executable, str(script), *command], check=True, stdout=subprocess.DEVNULL)
    try:
        cloud = json.loads((run_dir / "cloud.json").read_text())
        user = cloud["imagesync"]
        yield {"auth_type": "password", "auth_url": cloud["auth_url"], "username": user["username"],
               "password": user["password"], "project_name": user["project_name"],
               "user_domain_name": user["user_domain_name"], "project_domain_name": user["project_domain_name"]}
    finally:
        subprocess.run([sys.executable, str(script), "stop", "--dir", str(run_dir)], check=False,
                       stdout=subprocess.DEVNULL)
