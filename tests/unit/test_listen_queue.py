"""The event queue and the runner that drains it: coalesced per source, debounced (also after a run), kept on
disk, never losing an event to a busy lock, a run under way or a run that did nothing (imagesync.listen.queue,
imagesync.listen.service). A real SQLite file; the syncs are a recording function, the clock a number the test
moves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from imagesync.config.listen import ListenSettings
from imagesync.errors import LockHeldError, StateError
from imagesync.listen.queue import Queue, QueueFull
from imagesync.listen.service import RETRIES, RETRY_PAUSE, Runner

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

    def __call__(self, sources: tuple[str, ...]) -> int:
        self.runs.append(sources)
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, Exception):
            raise answer
        return answer


def runner(tmp_path: Path, syncs: Syncs, clock: Clock) -> Runner:
    return Runner(PACE, Queue(tmp_path, limit=3), syncs, clock=clock)


def drain(made: Runner) -> bool:
    """Run what is due now; False when nothing was."""
    due, _ = made._due()
    return bool(due) and made._run_once(due)


def test_a_burst_of_twenty_events_is_one_sync_once_the_source_is_quiet(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs()
    made = runner(tmp_path, syncs, clock)
    for _ in range(20):
        made.queue.add(["reg"], clock())
        clock.now += 1
    due, pause = made._due()
    assert due == [] and pause == pytest.approx(10 - 1)  # the last event came a second ago
    clock.now += 10
    assert drain(made) and syncs.runs == [("reg",)]
    assert made.queue.waiting() == [] and made.last is not None and made.last["exit_code"] == 0


def test_a_steady_trickle_still_syncs_after_max_wait(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs()
    made = runner(tmp_path, syncs, clock)
    for _ in range(13):  # an event every 5 s: never 10 s of quiet
        made.queue.add(["reg"], clock())
        clock.now += 5
    assert [w.source for w in made._due()[0]] == ["reg"]  # 65 s after the first


def test_an_event_during_a_run_waits_for_the_next_and_is_debounced_from_its_end(tmp_path: Path) -> None:
    """Before: the row kept its old ``first``, so max_wait had passed and the next run started at once."""
    clock = Clock()
    queue = Queue(tmp_path, limit=3)

    def sync(sources: tuple[str, ...]) -> int:
        clock.now += 300  # a long run, and a push one second before its end
        queue.add(["reg"], clock.now - 1)
        return 0

    made = Runner(PACE, queue, sync, clock=clock)
    queue.add(["reg", "demo"], clock())
    clock.now += 10
    assert drain(made)
    assert [(w.source, w.events) for w in queue.waiting()] == [("reg", 2)]
    due, pause = made._due()
    assert due == [] and pause == pytest.approx(10 - 1)


def test_the_wall_clock_going_back_during_a_run_loses_no_event(tmp_path: Path) -> None:
    clock = Clock()
    queue = Queue(tmp_path, limit=3)

    def sync(sources: tuple[str, ...]) -> int:
        queue.add(["reg"], clock.now - 3600)  # NTP stepped the clock back an hour
        return 0

    made = Runner(PACE, queue, sync, clock=clock)
    queue.add(["reg"], clock())
    clock.now += 10
    assert drain(made)
    assert [w.source for w in queue.waiting()] == ["reg"]


def test_a_busy_lock_takes_nothing_off_the_queue(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs(LockHeldError("another imagesync run holds it"))
    made = runner(tmp_path, syncs, clock)
    made.queue.add(["reg"], clock())
    clock.now += 10
    assert not drain(made) and made.busy
    assert [w.source for w in made.queue.waiting()] == ["reg"]
    assert drain(made) and not made.busy and made.queue.waiting() == []


@pytest.mark.parametrize("failure", [3, StateError("state.db locked"), RuntimeError("a bug")],
                         ids=["exit 3", "state error", "unexpected"])
def test_a_sync_that_did_nothing_is_tried_again_later_a_few_times(tmp_path: Path, failure: int | Exception) -> None:
    """Before: the events were dropped after any failure, and the change waited for the timer's run."""
    clock, syncs = Clock(), Syncs(*[failure] * (RETRIES + 1))
    made = runner(tmp_path, syncs, clock)
    made.queue.add(["reg"], clock())
    clock.now += 10
    pauses = []
    for _ in range(RETRIES):
        assert drain(made)
        [row] = made.queue.waiting()
        pauses.append(row.not_before - clock.now)
        assert not drain(made)  # not before its pause
        clock.now = row.not_before
    assert pauses == [RETRY_PAUSE, 2 * RETRY_PAUSE, 4 * RETRY_PAUSE]
    assert drain(made) and made.queue.waiting() == []  # given up: the scheduled run is the safety net
    assert len(syncs.runs) == RETRIES + 1 and made.last is not None and made.last["exit_code"] == 3


def test_a_new_event_ends_a_retry_pause(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs(3)
    made = runner(tmp_path, syncs, clock)
    made.queue.add(["reg"], clock())
    clock.now += 10
    assert drain(made) and made.queue.waiting()[0].not_before > clock.now
    made.queue.add(["reg"], clock())
    clock.now += 10
    assert drain(made) and made.queue.waiting() == [] and len(syncs.runs) == 2


def test_a_partial_sync_is_not_retried(tmp_path: Path) -> None:
    clock, syncs = Clock(), Syncs(1)
    made = runner(tmp_path, syncs, clock)
    made.queue.add(["reg"], clock())
    clock.now += 10
    assert drain(made) and made.queue.waiting() == []


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
    again.forget(["a"])
    assert [w.source for w in again.waiting()] == ["b"]


def test_an_unusable_queue_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "listen-queue.db").write_bytes(b"not a database, but long enough to be read as one" * 20)
    with pytest.raises(StateError, match="event queue"):
        Queue(tmp_path, limit=2).waiting()
