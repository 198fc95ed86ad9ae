"""How long commands run at a terminal wait for a list server that does not answer.

``plan``, ``lists``, ``check`` and ``verify`` are what a person runs and waits for: when stdout is a terminal, a
list fetch is tried at most twice (one retry after half a second, a server's Retry-After honoured up to two
seconds), so a refused connection is reported in about a second instead of after half a minute of backoff.
Runs whose output goes elsewhere (cron, systemd, a pipe, a file) keep ``download.retries`` and the full
backoff: there nobody waits, and a flaky server deserves every attempt.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the CLI imports this module for RULE before it knows whether a command needs the config
    from imagesync.config.settings import Settings

RETRIES = 1
BACKOFF = 0.5
MAX_DELAY = 2.0
RULE = ("At a terminal (stdout a TTY) a list fetch is retried once, after 0.5 s (Retry-After up to 2 s); "
        "otherwise download.retries with the full backoff.")


def for_terminal(settings: Settings, stream: TextIO | None = None) -> Settings:
    """``settings`` with the terminal's patience when ``stream`` (default stdout) is a TTY, else unchanged."""
    out = stream if stream is not None else sys.stdout
    try:
        interactive = out.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream: not a person waiting
        interactive = False
    if not interactive:
        return settings
    d = settings.download
    download = replace(d, retries=min(d.retries, RETRIES), backoff=min(d.backoff, BACKOFF),
                       max_delay=min(d.max_delay, MAX_DELAY))
    return replace(settings, download=download)
