"""The list stage on its own: fetch, verify, parse and check the selected lists (DESIGN §1, first line).

Apart from :mod:`imagesync.run.pipeline` so that ``lists`` and ``check``, which need nothing of a run's machinery
(state of targets, planning, downloads, conversion), load none of it.
"""

from __future__ import annotations

from datetime import datetime

from imagesync.config.settings import Settings
from imagesync.sources.hepix.stage import ListOutcome, ListStage, make_fetcher, make_verifier, selected
from imagesync.state.store import StateStore


def collect_lists(settings: Settings, *, now: datetime, names: tuple[str, ...] = ()) -> list[ListOutcome]:
    """Fetch, verify, parse and check lists without touching any state (``lists``, ``check``)."""
    return gather_lists(settings, None, names, now, record=False)


def gather_lists(settings: Settings, store: StateStore | None, names: tuple[str, ...], now: datetime, *,
                 record: bool) -> list[ListOutcome]:
    """The list stage for the selected lists (all when ``names`` is empty); with ``record`` (and a store) the
    outcomes are remembered. Failures of a list are in its outcome; raises nothing else of its own."""
    fetcher = make_fetcher(settings)
    try:
        stage = ListStage(fetcher=fetcher, verifier=make_verifier(settings), now=now, store=store, record=record)
        outcomes = [stage.load(item) for item in selected(settings, names)]
    finally:
        fetcher.close()
    return outcomes
