"""The local demo: a signed list served over HTTPS on 127.0.0.1, synced into a directory by the real code.

Three rounds show add, then update and retire, then what a tampered list does (nothing is retired). The story is
told on stdout; the log lines of the runs stay out of it unless ``-v``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagesync.config import settings as config
from imagesync.demo.oci_run import run_oci_demo
from imagesync.demo.story import Echo, next_steps, story_only, sync_round
from imagesync.demo.world import LIST_PATH, DemoWorld, as_qcow2, build, demo_images
from imagesync.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, ImagesyncError
from imagesync.targets import base as drivers


def run_demo(*, echo: Echo, glance: bool = False, oci: bool = False) -> int:
    """Run the demo in a temporary directory; return the exit code. With ``oci`` the OCI registry demo
    (:mod:`imagesync.demo.oci_run`, which names what it raises) instead.

    With ``glance`` the target is the Glance of the OS_* environment or, without OS_AUTH_URL, the dev cloud of a
    source checkout (started for the demo); the images it made are deleted again at the end, also after Ctrl-C.
    Raises ConversionError without qemu-img, ImagesyncError without a cloud.
    """
    if oci:
        return run_oci_demo(echo=echo, glance=glance)
    with tempfile.TemporaryDirectory(prefix="imagesync-demo-") as tmp, story_only(), \
            _target(Path(tmp), glance, echo) as (target_name, target), build(Path(tmp)) as world:
        alpine, debian = demo_images("1.0")
        signed = world.publish([as_qcow2(alpine, world.root), debian])
        settings = config.load(world.write_config({"targets": {target_name: target}}))
        echo(f"imagesync demo, all on 127.0.0.1, in {tmp}")
        echo(f"  CA directory {world.ca_dir} (ephemeral CA with CRL; crl: require)")
        echo(f"  signed list  {world.list_url} (HTTPS, AppDB-style token required)")
        echo(f"  target       {target_name}: {_describe(target)}")
        with _removing_images(settings, echo, glance):
            codes = _rounds(echo, settings, world, signed)
        good = codes == (EXIT_OK, EXIT_OK, EXIT_NOTHING_DONE)
        echo("\nThe demo went as it should." if good else "\nThe demo did NOT go as it should: see above.")
        next_steps(echo)
        return EXIT_OK if good else EXIT_PARTIAL


def _rounds(echo: Echo, settings: config.Settings, world: DemoWorld, signed: bytes) -> tuple[int, int, int]:
    first = sync_round(echo, "1. first sync: both images are new", settings)
    world.publish([as_qcow2(demo_images("2.0")[0], world.root)])
    second = sync_round(echo, "2. the publisher releases Demo Alpine 2.0 and withdraws Demo Debian", settings)
    world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
    third = sync_round(echo, "3. someone serves an old list with one byte changed: it is refused and nothing is "
                       "retired", settings)
    return first.exit_code, second.exit_code, third.exit_code


@contextmanager
def _removing_images(settings: config.Settings, echo: Echo, glance: bool) -> Iterator[None]:
    """Delete every image carrying the demo's tag when the block ends, also by an error or Ctrl-C."""
    try:
        yield
    finally:
        if glance:
            target = settings.targets[0]
            try:
                count = _delete_tagged(target)
            except ImagesyncError as exc:
                # Said, not raised: raising here would hide why the demo ended (an error or Ctrl-C).
                echo(f"\ncould not remove the demo's images ({exc}): delete those tagged {target.tag} by hand")
            else:
                echo(f"\nremoved the {count} image(s) the demo made in Glance")


def _delete_tagged(target: config.TargetSettings) -> int:
    driver = drivers.load(target)
    try:
        held = driver.inventory()
        removed = driver.cleanup()  # half-uploaded ones, when interrupted mid-upload
        for image in held:
            driver.retire(image.target_id, "delete")
    finally:
        driver.close()
    return len(held) + len(removed)


def _describe(target: dict[str, object]) -> str:
    if target["driver"] == "directory":
        return f"directory {target['path']} (accepts qcow2, raw)"
    return f"Glance, tag {target['tag']}, visibility {target['visibility']}"


@contextmanager
def _target(root: Path, glance: bool, echo: Echo) -> Iterator[tuple[str, dict[str, object]]]:
    if not glance:
        yield "archive", {"driver": "directory", "path": str(root / "archive")}
        return
    tag = f"imagesync-demo-{root.name[-8:]}"
    target: dict[str, object] = {"driver": "glance", "tag": tag, "visibility": "private"}
    if os.environ.get("OS_AUTH_URL"):
        yield "cloud", target
        return
    with _dev_cloud(root, echo) as auth:
        yield "cloud", {**target, "auth": auth}


@contextmanager
def _dev_cloud(root: Path, echo: Echo) -> Iterator[dict[str, str]]:
    script = Path(__file__).resolve().parents[2] / "tests" / "devcloud" / "devcloud.py"
    if not script.is_file():
        raise ImagesyncError("no OS_AUTH_URL and no dev cloud (tests/devcloud of a source checkout)",
                             subject="demo --glance", hint="source an openrc, or run bin/demo from a source checkout")
    echo("starting a local Keystone + Glance (tests/devcloud; the first time it installs them from PyPI, "
         "which takes a few minutes)")
    run_dir = root / "devcloud"
    for command in (["install"], ["start", "--dir", str(run_dir)]):
        _devcloud(script, command)
    try:
        cloud = json.loads((run_dir / "cloud.json").read_text())
        user = cloud["imagesync"]
        yield {"auth_type": "password", "auth_url": cloud["auth_url"], "username": user["username"],
               "password": user["password"], "project_name": user["project_name"],
               "user_domain_name": user["user_domain_name"], "project_domain_name": user["project_domain_name"]}
    finally:
        subprocess.run([sys.executable, str(script), "stop", "--dir", str(run_dir)], check=False,
                       capture_output=True)


def _devcloud(script: Path, command: list[str]) -> None:
    # Its progress lines are not part of the story: shown only when it fails.
    done = subprocess.run([sys.executable, str(script), *command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise ImagesyncError(f"dev cloud {command[0]} failed: {tail}", subject="demo --glance")
