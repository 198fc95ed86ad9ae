"""The local demo: a signed list served over HTTPS on 127.0.0.1, synced into a directory by the real code.

Three rounds show add, then update and retire, then what a tampered list does (nothing is retired).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from imagesync import config, report
from imagesync.demo.world import LIST_PATH, DemoWorld, as_qcow2, build, demo_images
from imagesync.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from imagesync.pipeline import SyncResult, sync


def run_demo(*, echo: Callable[[str], None]) -> int:
    """Run the demo in a temporary directory; return the exit code. Raises ConversionError without qemu-img."""
    with tempfile.TemporaryDirectory(prefix="imagesync-demo-") as tmp, build(Path(tmp)) as world:
        alpine, debian = demo_images("1.0")
        signed = world.publish([as_qcow2(alpine, world.root), debian])
        target = world.root / "archive"
        settings = config.load(world.write_config({"targets": {"archive": {"driver": "directory",
                                                                           "path": str(target)}}}))
        echo(f"imagesync demo, all on 127.0.0.1, in {tmp}")
        echo(f"  CA directory {world.ca_dir} (ephemeral CA with CRL; crl: require)")
        echo(f"  signed list  {world.list_url} (HTTPS, AppDB-style token required)")
        echo(f"  target       directory {target} (accepts qcow2, raw)")
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
    root = world.root / "archive"
    held = sorted(str(p.relative_to(root))[: -len(".json")] for p in root.rglob("*.json"))
    echo("target now holds:\n" + "\n".join(f"  {path}" for path in held))
    return result
