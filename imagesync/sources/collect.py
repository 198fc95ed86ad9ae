"""The source stage on its own: read and verify the selected sources of every kind (DESIGN §1, first line).

Apart from :mod:`imagesync.run.pipeline` so that ``lists`` and ``check``, which need nothing of a run's machinery
(state of targets, planning, downloads, conversion), load none of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from imagesync.config.settings import Settings
from imagesync.sources import base
from imagesync.sources.base import Context, Source, SourceOutcome


def collect(settings: Settings, *, now: datetime, names: tuple[str, ...] = ()) -> list[SourceOutcome]:
    """Read and verify sources without touching any state (``lists``, ``check``). Raises ConfigError when a kind
    of source cannot be loaded; a source's own failure is in its outcome."""
    with opened(Context(settings=settings, now=now, store=None, record=False), names) as sources:
        return [source.load() for source in sources]


@contextmanager
def opened(context: Context, names: tuple[str, ...] = ()) -> Iterator[list[Source]]:
    """The configured sources (the named ones, else the enabled ones), closed on the way out. Raises ConfigError."""
    sources = base.configured(context, names)
    try:
        yield sources
    finally:
        for source in sources:
            source.close()
