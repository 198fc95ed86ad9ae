"""The local demo: a freshly signed list served over HTTPS on 127.0.0.1, processed by the real code."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from imagesync import config, report
from imagesync.demo.world import LIST_PATH, build, demo_images
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.pipeline import collect_lists


def run_demo(*, echo: Callable[[str], None]) -> int:
    """Run the demo in a temporary directory; return the exit code."""
    with tempfile.TemporaryDirectory(prefix="imagesync-demo-") as tmp, build(Path(tmp)) as world:
        signed = world.publish(demo_images())
        settings = config.load(world.write_config())
        echo(f"imagesync demo, all on 127.0.0.1, in {tmp}")
        echo(f"  CA directory  {world.ca_dir} (ephemeral CA, CRL, crl: require)")
        echo(f"  signed list   {world.list_url} (HTTPS, AppDB-style token required)")
        echo("\n$ imagesync lists")
        outcomes = collect_lists(settings, now=datetime.now(UTC))
        echo(report.lists_text(outcomes))
        echo("\nNow one byte of the served list is changed:")
        world.server.put(LIST_PATH, signed.replace(b"Demo Alpine", b"Demo Alpin3", 1))
        tampered = collect_lists(settings, now=datetime.now(UTC))
        echo(report.lists_text(tampered))
        echo("(in a sync, a list that fails like this retires none of its images)")
        good = all(o.status == "ok" for o in outcomes) and all(o.status == "failed" for o in tampered)
        return EXIT_OK if good else EXIT_PARTIAL
