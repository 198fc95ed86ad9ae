"""``imagesync listen``: the endpoint that turns change events into syncs (:mod:`imagesync.listen`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from imagesync.cli.context import Context
from imagesync.errors import EXIT_OK, ConfigError


@click.command("listen")
@click.option("--report-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write each event-started run's JSON report here (atomically).")
@click.pass_obj
def listen_cmd(obj: Context, report_file: Path | None) -> None:
    """Sync what change events name, as they come: registry notifications, Harbor webhooks, POST /v1/sync.

    Runs until SIGTERM; the scheduled sync stays the safety net."""
    from imagesync.cli import runs
    from imagesync.listen import service

    settings = obj.settings()
    if not settings.targets:
        raise ConfigError("targets: none configured (add at least one, e.g. driver: directory)",
                          subject=str(settings.source))

    def run(sources: tuple[str, ...]) -> int:
        result, _ = runs.run(settings, dry_run=False, lists=sources, report_file=report_file)
        return result.exit_code

    service.serve(settings, run)
    sys.exit(EXIT_OK)
