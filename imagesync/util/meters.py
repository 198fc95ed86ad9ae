"""What moves bytes reports its progress to: a :class:`Meter` per transfer, from a :class:`Progress`. The bars that
draw them on a terminal are the CLI's (:mod:`imagesync.cli.progress`); every other stage sees only these."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class Meter(Protocol):
    """Counts the bytes of one transfer."""

    def update(self, n: int) -> object: ...

    def reset(self) -> object:
        """Back to zero: the transfer starts again."""
        ...


class _Silent:
    def update(self, n: int) -> None:
        return None

    def reset(self) -> None:
        return None


SILENT: Meter = _Silent()


class Progress(Protocol):
    def meter(self, label: str, total: int) -> AbstractContextManager[Meter]:
        """A meter for a transfer of ``total`` bytes, shown (if at all) under ``label`` while the block runs."""
        ...


class _NoProgress:
    def meter(self, label: str, total: int) -> AbstractContextManager[Meter]:
        return nullcontext(SILENT)


NO_PROGRESS: Progress = _NoProgress()
