"""The event queue and the runner that drains it: coalesced per source, debounced, kept on disk, never losing an
event to a busy lock or a run under way (imagesync.listen.queue, imagesync.listen.service). A real SQLite file;
the syncs are a recording function, the clock a number the test moves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from imagesync.config.listen import ListenSettings
from imagesync.errors import LockHeldError, StateError
from imagesync.listen.queue import Queue, QueueFull
from imagesync.listen.service import Runner

PACE = ListenSettings(secret="x" * 16, debounce=timedelta(seconds=10), max_wait=timedelta(seconds=60))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Syncs:
    """Records each run's sources; answers with the next of ``answers`` (an exit code or an exception)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.runs: list[tuple[str, ...]] = []
        self.during: list[str] = []  # sources an event names while the run is under way

    def __call__(self, sources: tuple[str, ...]) -> int:
        self.runs.append(sources)
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, Exception):
            raise answer
        return answer


def runner(tmp_path: Path, syncs: Syncs, clock: Clock) -> Runner:
    return Runner(PACE, Queue(tmp_path, limit=3), syncs, clock=clock)


def test_a_burst_of_twenty_events_is_one_sync_once_the_source_is_quiet(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs()
    made = runner(tmp_path, syncs, clock)
    for _ in range(20):
        made.queue.add(["reg"], clock())
        clock.now += 1
    due, pause = made._due()
    assert due == [] and pause == pytest.approx(10 - 1)  # the last event came a second ago
    clock.now += 10
    due, _ = made._due()
    assert made._run_once(due) and syncs.runs == [("reg",)]
    assert made.queue.waiting() == [] and made.last is not None and made.last["exit_code"] == 0


def test_a_steady_trickle_still_syncs_after_max_wait(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs()
    made = runner(tmp_path, syncs, clock)
    for _ in range(13):  # an event every 5 s: never 10 s of quiet
        made.queue.add(["reg"], clock())
        clock.now += 5
    assert made._due()[0] == ["reg"]  # 65 s after the first


def test_an_event_during_a_run_keeps_its_source_waiting_for_the_next(tmp_path: Path) -> None:
    clock = Clock()
    queue = Queue(tmp_path, limit=3)

    def sync(sources: tuple[str, ...]) -> int:
        clock.now += 30  # the run takes 30 s, and a push comes in the middle of it
        queue.add(["reg"], clock.now - 15)
        return 0

    made = Runner(PACE, queue, sync, clock=clock)
    queue.add(["reg", "demo"], clock())
    clock.now += 10
    assert made._run_once(["reg", "demo"])
    assert [(w.source, w.events) for w in queue.waiting()] == [("reg", 2)]


def test_a_busy_lock_takes_nothing_off_the_queue_and_a_failed_sync_does(tmp_path: Path) -> None:
    clock = Clock()
    syncs = Syncs(LockHeldError("another imagesync run holds it"), 1, StateError("state.db locked"),
                  RuntimeError("a bug"))
    made = runner(tmp_path, syncs, clock)
    made.queue.add(["reg"], clock())
    clock.now += 10
    assert not made._run_once(["reg"]) and made.busy
    assert [w.source for w in made.queue.waiting()] == ["reg"]
    for code in (1, 3, 1):  # exit 1; a StateError's exit 3; an unexpected error, the endpoint still up
        made.queue.add(["reg"], clock())
        clock.now += 10
        assert made._run_once(["reg"])
        assert made.queue.waiting() == [] and made.last is not None and made.last["exit_code"] == code
    assert len(syncs.runs) == 4 and not made.busy


def test_the_queue_survives_a_restart_and_is_bounded(tmp_path: Path) -> None:
    queue = Queue(tmp_path, limit=2)
    queue.add(["a", "b"], 5.0)
    queue.add(["a"], 7.0)
    with pytest.raises(QueueFull):
        queue.add(["c"], 8.0)
    queue.close()
    again = Queue(tmp_path, limit=2)
    assert [(w.source, w.first, w.last, w.events) for w in again.waiting()] == [("a", 5.0, 7.0, 2),
                                                                                ("b", 5.0, 5.0, 1)]
    again.add(["a"], 9.0)  # a waiting source always fits


def test_an_unusable_queue_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "listen-queue.db").write_bytes(b"not a database, but long enough to be read as one" * 20)
    with pytest.raises(StateError, match="event queue"):
        Queue(tmp_path, limit=2).waiting()
