"""The HEPiX image list as a :class:`~imagesync.sources.base.Source`: the ``hepix`` entry point of the group
``imagesync.sources``. The work is :class:`~imagesync.sources.hepix.stage.ListStage`'s; this is only its face."""

from __future__ import annotations

from imagesync.config.settings import ListSettings
from imagesync.model import DesiredImage
from imagesync.sources.base import Context, ImageLocation, Source, SourceOutcome
from imagesync.sources.hepix.stage import ListStage, make_fetcher, make_verifier, selected


class ListSource:
    """One subscribed list. The lists of a run share one stage: one HTTP session, one CA directory, and the
    check that no list is subscribed twice under two names."""

    kind = "hepix"

    def __init__(self, item: ListSettings, stage: ListStage) -> None:
        self.name = item.name
        self._item = item
        self._stage = stage

    def load(self) -> SourceOutcome:
        """See :meth:`ListStage.load`. Raises nothing."""
        return self._stage.load(self._item)

    def locate(self, image: DesiredImage) -> ImageLocation:
        """The list's ``hv:uri``, fetched without the list's token (image servers are public). Raises nothing."""
        return ImageLocation(url=image.image.uri)

    def close(self) -> None:
        self._stage.fetcher.close()


def lists(context: Context, names: tuple[str, ...]) -> list[Source]:
    """The selected lists (every enabled one when ``names`` is empty). Raises nothing."""
    chosen = selected(context.settings, names)
    if not chosen:
        return []
    stage = ListStage(fetcher=make_fetcher(context.settings), verifier=make_verifier(context.settings),
                      now=context.now, store=context.store, record=context.record)
    return [ListSource(item, stage) for item in chosen]
