"""The local demo: a signed list served over HTTPS on 127.0.0.1, synced into a directory by the real code.

Three rounds show add, then update and retire, then what a tampered list does (nothing is retired). The story is
told on stdout; the log lines of the runs stay out of it unless ``-v``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imagesync.cli import report
from imagesync.config import settings as config
from imagesync.demo.world import LIST_PATH, DemoWorld, as_qcow2, build, demo_images
from imagesync.errors import EXIT_LOCKED, EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ImagesyncError
from imagesync.run.pipeline import SyncResult, sync
from imagesync.targets import base as drivers

Echo = Callable[[str], None]
MEANING = {
    EXIT_OK: "success: everything was done (or there was nothing to do)",
    EXIT_PARTIAL: "some lists, images or actions failed; the rest was done",
    EXIT_USAGE: "usage or configuration error: nothing was done",
    EXIT_NOTHING_DONE: "nothing could be done: no list was fetched and verified, or no target was reachable",
    EXIT_LOCKED: "another run holds the lock: nothing was done, the next run catches up",
}


def run_demo(*, echo: Echo, glance: bool = False) -> int:
    """Run the demo in a temporary directory; return the exit code.

    With ``glance`` the target is the Glance of the OS_* environment or, without OS_AUTH_URL, the dev cloud of a
    source checkout (started for the demo); the images it made are deleted again at the end, also after Ctrl-C.
    Raises ConversionError without qemu-img, ImagesyncError without a cloud.
    """
    with tempfile.TemporaryDirectory(prefix="imagesync-demo-") as tmp, _story_only(), \
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
        _next_steps(echo)
        return EXIT_OK if good else EXIT_PARTIAL


def _rounds(echo: Echo, settings: config.Settings, world: DemoWorld, signed: bytes) -> tuple[int, int, int]:
    first = _round(echo, "1. first sync: both images are new", settings, world)
    world.publish([as_qcow2(demo_images("2.0")[0], world.root)])
    second = _round(echo, "2. the publisher releases Demo Alpine 2.0 and withdraws Demo Debian", settings, world)
    world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
    third = _round(echo, "3. someone serves an old list with one byte changed: it is refused and nothing is "
                   "retired", settings, world)
    return first.exit_code, second.exit_code, third.exit_code


def _round(echo: Echo, title: str, settings: config.Settings, world: DemoWorld) -> SyncResult:
    echo(f"\n{title}\n$ imagesync sync")
    result = sync(settings, dry_run=False)
    echo(report.sync_text(result))
    echo(f"exit code {result.exit_code}: {MEANING.get(result.exit_code, 'unexpected')}")
    target = settings.targets[0]
    driver = drivers.load(target)
    try:
        held = sorted(f"{h.list_name}/{h.identifier} {h.version} ({'active' if h.active else 'retired'}) {h.target_id}"
                      for h in driver.inventory())
    finally:
        driver.close()
    echo("target now holds:\n" + "\n".join(f"  {line}" for line in held))
    return result


def _next_steps(echo: Echo) -> None:
    # A source checkout (editable install) first: its files are the live ones. Else where the wheel put them in
    # the venv (/opt/imagesync/share/imagesync after bin/install).
    checkout = Path(__file__).resolve().parents[2]
    shipped = Path(sys.prefix) / "share" / "imagesync"
    base = checkout if (checkout / "etc" / "imagesync.yaml").is_file() else shipped
    echo("\nNext steps:")
    echo(f'  1. read {base / "README.md"}, sections "Install" and "Scheduling"')
    echo(f"  2. bin/install copies the example config {base / 'etc' / 'imagesync.yaml'} to /etc/imagesync/;")
    echo("     name your lists and your target there, then run: imagesync check; imagesync plan")


@contextmanager
def _story_only() -> Iterator[None]:
    # Log lines would interleave with the story on a terminal; -v (DEBUG on the imagesync logger, set by the CLI)
    # asks for them. Disabled process-wide, so library loggers stay quiet too; restored afterwards.
    if logging.getLogger("imagesync").isEnabledFor(logging.DEBUG):
        yield
        return
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


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
