"""How a demo tells its story: one ``imagesync sync`` per step with what it printed, what its exit code means and
what the target then holds; the log lines kept out of it unless ``-v``; the next steps at the end. Shared by the
list demo (:mod:`imagesync.demo.run`) and the OCI demo (:mod:`imagesync.demo.oci_run`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imagesync.cli import report
from imagesync.config import settings as config
from imagesync.errors import EXIT_LOCKED, EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
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


def sync_round(echo: Echo, title: str, settings: config.Settings) -> SyncResult:
    """Run ``imagesync sync`` once and tell what it printed, what its exit code means and what the target holds.

    Raises ImagesyncError when the target cannot be read (sync itself reports its failures in the result)."""
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


def next_steps(echo: Echo) -> None:
    """Where to read on and what to run next, with the paths of this installation. Raises nothing."""
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
def story_only() -> Iterator[None]:
    """Keep log lines out of the story for the block, unless ``-v`` asked for them. Raises nothing."""
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
