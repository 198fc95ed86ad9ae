"""Progress bars for downloads and uploads (bytes, rate, ETA), on a terminal only (DESIGN §2).

The library is tqdm: it draws several bars at once from several threads (downloads run in parallel) under one lock,
counts bytes with rate and ETA out of the box, and can write other text around live bars
(``tqdm.external_write_mode``). click's own progress bar draws one bar from one thread and knows no byte rate;
rich does all of it but imports several times slower and brings a console and logging of its own we do not need.
tqdm is imported only inside :func:`on_terminal`, once stderr is known to be a terminal: a cron run, ``--help``
and every command without transfers never load it (about 35 ms).

While bars may be on screen, the log handlers that write to the same terminal write through
``external_write_mode``: the bars are cleared, the record written on a line of its own, the bars drawn again, so a
log line never lands in the middle of a bar. A finished bar is removed; the INFO record of the download or of the
action is what stays.

Whatever moves bytes takes a :class:`Meter` and calls ``update(n)`` per chunk: :data:`SILENT` costs one method call.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from imagesync.util.meters import NO_PROGRESS, Meter, Progress
from imagesync.util.textsafe import one_line

_LABEL_WIDTH = 48


class _Bars:
    def __init__(self, tqdm: Any, stream: IO[str]) -> None:
        self._tqdm = tqdm
        self._stream = stream

    @contextmanager
    def meter(self, label: str, total: int) -> Iterator[Meter]:
        text = one_line(label)  # names come from lists: no escape sequence reaches the terminal
        if len(text) > _LABEL_WIDTH:
            text = "..." + text[-(_LABEL_WIDTH - 3):]
        bar = self._tqdm(total=total, desc=text, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                         file=self._stream, dynamic_ncols=True, mininterval=0.2)
        try:
            yield bar
        finally:
            bar.refresh()  # the final count, rate and time, drawn once before the bar goes
            bar.close()
            # tqdm leaves the cursor after the blanks of a closed bar below the first line; the next record must
            # start at the left margin, not there.
            with self._tqdm.get_lock():
                self._stream.write("\r")
                self._stream.flush()


@contextmanager
def on_terminal(*, enabled: bool = True, stream: IO[str] | None = None) -> Iterator[Progress]:
    """Bars on ``stream`` (default stderr) if ``enabled`` and it is a terminal, else :data:`NO_PROGRESS` (and tqdm
    is not imported). Meanwhile log handlers writing to that stream write around the bars. Raises nothing."""
    target = stream if stream is not None else sys.stderr
    if not enabled or not target.isatty():
        yield NO_PROGRESS
        return
    import tqdm  # noqa: PLC0415 - only a terminal pays for it

    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and h.stream is target]
    for handler in handlers:
        handler.setStream(_AroundBars(target, tqdm.tqdm))
    try:
        yield _Bars(tqdm.tqdm, target)
    finally:
        for handler in handlers:
            handler.setStream(target)


class _AroundBars:
    """A stream for a log handler: each write clears the live bars, writes, and draws them again."""

    def __init__(self, stream: IO[str], tqdm: Any) -> None:
        self._stream = stream
        self._tqdm = tqdm

    def write(self, text: str) -> int:
        with self._tqdm.external_write_mode(file=self._stream):
            written = self._stream.write(text)
            self._stream.flush()
        return written

    def flush(self) -> None:
        self._stream.flush()
