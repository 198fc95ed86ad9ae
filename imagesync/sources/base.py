"""The one interface every source implements (the counterpart of :mod:`imagesync.targets.base`), and how sources are
found: entry points in the group ``imagesync.sources``, one per kind of source (``hepix`` lists, ``oci`` registries).

A source turns its settings and the state's memory into what it wants synced this run (a :class:`ListDesire` of
frozen :class:`DesiredImage` values, the planner's input) plus its status for the reports, and knows how the bytes
of one of its images are fetched (:class:`ImageLocation`). Every source keeps DESIGN invariant 1: a source that
cannot be read or verified says ``failed``, and nothing it ever wanted is retired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Protocol

from imagesync.config.settings import Settings
from imagesync.errors import ConfigError
from imagesync.model import DesiredImage, ListDesire, ListState, Signer
from imagesync.state.store import StateStore

GROUP = "imagesync.sources"


class SourceSettings(Protocol):
    """What every kind of source's settings have in common (the reports read these)."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def signature(self) -> str: ...

    @property
    def enabled(self) -> bool: ...


class Accepted(Protocol):
    """What a source that was read and verified shows in reports and metrics."""

    @property
    def identifier(self) -> str: ...

    @property
    def created(self) -> datetime | None: ...

    @property
    def expires(self) -> datetime | None: ...

    @property
    def signer(self) -> Signer | None: ...

    @property
    def unsigned(self) -> bool: ...

    @property
    def image_count(self) -> int: ...


@dataclass(frozen=True)
class SourceOutcome:
    """One source this run. ``status == "failed"`` means unknown: nothing of it may retire (invariant 1)."""

    settings: SourceSettings
    status: ListState
    error: str | None
    accepted: Accepted | None
    desire: ListDesire
    # Who signed a source that failed after its signature verified (endorser mismatch, expiry), for reports.
    signer: Signer | None = None
    kind: str = "hepix"
    # Parts of the source refused this run (an artifact with no valid signature): the run exits 1 because of them.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageLocation:
    """How the bytes of one image are fetched: the URL and, per attempt, the headers to send (a registry's bearer
    token may have expired since the last attempt); None sends none."""

    url: str
    headers: Callable[[], Mapping[str, str]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Context:
    """What a run hands every source: ``store`` is None for commands that keep no state (``lists``, ``check``),
    and with ``record`` False nothing is written to it."""

    settings: Settings
    now: datetime
    store: StateStore | None = None
    record: bool = True


class Source(Protocol):
    name: str
    kind: str

    def load(self) -> SourceOutcome:
        """Fetch, verify and read the source. Never raises: whatever goes wrong is a ``failed`` outcome with a
        one-line error naming the source."""
        ...

    def locate(self, image: DesiredImage) -> ImageLocation:
        """Where the bytes of one of this source's images come from. Raises nothing."""
        ...

    def close(self) -> None: ...


class Kind(Protocol):
    """An entry point of the group: builds the configured sources of its kind (the enabled ones, or the named
    ones when ``names`` is not empty)."""

    def __call__(self, context: Context, names: tuple[str, ...]) -> list[Source]: ...


def kinds() -> tuple[str, ...]:
    """Names of the installed kinds of source."""
    return tuple(sorted(ep.name for ep in entry_points(group=GROUP)))


def configured(context: Context, names: tuple[str, ...] = ()) -> list[Source]:
    """Every configured source of every installed kind, lists first (the order reports have always had). Raises
    ConfigError when a kind cannot be loaded."""
    found: list[Source] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name != "hepix", e.name)):
        try:
            kind: Kind = ep.load()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"source kind {ep.name!r} cannot be loaded: {exc}") from exc
        found += kind(context, names)
    return found


def load_all(sources: list[Source]) -> Iterator[SourceOutcome]:
    """Each source's outcome in turn (each isolated by its own ``load``)."""
    for source in sources:
        yield source.load()
