"""One sync run as the command line makes it: metrics written, hooks and webhooks told, the report filed.

``imagesync sync`` and ``imagesync listen`` both run through :func:`run`, so a run an event started is logged,
counted in the metrics and announced to the hooks exactly like one cron started.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from imagesync.cli import report
from imagesync.cli.context import json_text_of
from imagesync.errors import EXIT_PARTIAL
from imagesync.notify import deliver as notify
from imagesync.run import pipeline
from imagesync.run.pipeline import SyncResult
from imagesync.util import atomic
from imagesync.util.meters import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from imagesync.cli.metrics import Recorder
    from imagesync.config.settings import Settings


def run(settings: Settings, *, dry_run: bool, lists: tuple[str, ...] = (), targets: tuple[str, ...] = (),
        report_file: Path | None = None, progress: Progress = NO_PROGRESS) -> tuple[SyncResult, dict[str, object]]:
    """One run and its JSON report (also written to ``report_file``). Raises what
    :func:`imagesync.run.pipeline.sync` raises (LockHeldError when another run holds the lock, StateError,
    ConfigError)."""
    recorder = _recorder(settings, dry_run)
    # Leaving the notifier waits for the deliveries.
    with notify.Notifier.for_run(settings, dry_run=dry_run) as notifier:
        result = pipeline.sync(settings, dry_run=dry_run, lists=lists, targets=targets, finish=recorder,
                               observer=notifier, progress=progress)
        if recorder is not None and recorder.error is not None:
            result.exit_code = max(result.exit_code, EXIT_PARTIAL)  # alerts would read a stale file: not a success
        notifier.finished(result)
    data = report.sync_json(result)
    if report_file is not None:
        atomic.write_bytes(report_file, (json_text_of(data) + "\n").encode())
    return result, data


def _recorder(settings: Settings, dry_run: bool) -> Recorder | None:
    # Asked here, not by Recorder.for_run, so a run that writes no metrics never imports prometheus_client.
    if settings.metrics_file is None or dry_run:
        return None
    from imagesync.cli import metrics  # noqa: PLC0415 - prometheus_client only for a run that writes metrics

    return metrics.Recorder.for_run(settings, dry_run=dry_run)
