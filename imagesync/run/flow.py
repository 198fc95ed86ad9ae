"""The order a plan is carried out in: bytes flow from download to upload without waiting for each other.

Each image is pushed to its targets as soon as its download is verified, while the other downloads go on:
downloads run ``download.concurrency`` at a time (:meth:`Downloader.running`), and the download thread that
verified an image hands each of its adds and updates to the lane of that action's target, where at most
``upload_concurrency`` run at once. A run's wall time is then about the slower of all downloads and all uploads,
not their sum. The actions that move no bytes (keeps, metadata refreshes, adoptions) run meanwhile on the
calling thread. A target's retirements run last, once every add and update of that target has finished, so a
new version is active before any old one is touched (invariant 3), exactly as when everything ran one after the
other; they do not wait for the other targets' pushes (a slow site holds back no other, issue 11). An image
every target of which fetches itself (Glance's web-download) is not downloaded at all unless one of them falls
back (:mod:`imagesync.run.pull`).

Why not upload while the bytes still arrive (hashing on the fly, making the image visible only once the sha512
matched)? A Glance image being uploaded already exists for its owner; a wrong byte found at the end would mean a
delete after the fact, and a kill in between an unverified image left behind (invariant 2). Verified first keeps
it simple: with more than one image the overlap between images hides most of the download time anyway (see
bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TypeVar

from imagesync.images.download import Downloaded, Downloader, DownloadError, DownloadRequest
from imagesync.model import Action, DesiredImage
from imagesync.run.pull import Deferred
from imagesync.sources.base import ImageLocation

T = TypeVar("T")
Fetched = Downloaded | DownloadError | Deferred


def moves_bytes(action: Action) -> bool:
    """True for the actions that need the image's bytes (add, update)."""
    return action.kind in ("add", "update") and action.desired is not None


def run(actions: Sequence[Action], *, downloader: Downloader, lanes: Mapping[str, int],
        transfer: Callable[[Action, Fetched], T], other: Callable[[Action], T],
        locate: Callable[[DesiredImage], ImageLocation] = lambda d: ImageLocation(url=d.image.uri),
        pulls: Callable[[Action], bool] = lambda a: False) -> list[T]:
    """Carry out ``actions`` (the results in their order): ``transfer`` for adds and updates on their target's
    lane once their download is done, ``other`` for the rest, retirements after every transfer. ``lanes`` gives
    each target's upload concurrency; ``locate`` where an image's bytes are (its source knows). ``transfer`` and
    ``other`` must not raise but for a bug, which is re-raised here once the work in flight has stopped. Each
    target's retirements run on a thread of their own once that target's transfers are over. An image all of
    whose transfers ``pulls`` (their target fetches it itself) is not downloaded: its transfers start at once,
    with a :class:`Deferred` download (:mod:`imagesync.run.pull`)."""
    results: dict[int, T] = {}
    by_sha: dict[str, list[int]] = {}
    for index, action in enumerate(actions):
        if moves_bytes(action):
            assert action.desired is not None
            by_sha.setdefault(action.desired.image.content_key, []).append(index)
    pulled = {key: indexes for key, indexes in by_sha.items() if all(pulls(actions[i]) for i in indexes)}
    fetched = {key: indexes for key, indexes in by_sha.items() if key not in pulled}
    with _lanes(lanes) as submit:
        deferred = [(actions[i].target, submit(actions[i].target, _indexed(i, transfer, actions[i], later)))
                    for request in _requests(actions, pulled, locate)
                    for later in [Deferred(downloader, request)] for i in pulled[request.key]]

        def push(request: DownloadRequest, fetched: Fetched) -> list[tuple[str, Future[tuple[int, T]]]]:
            return [(actions[i].target, submit(actions[i].target, _indexed(i, transfer, actions[i], fetched)))
                    for i in by_sha[request.key]]

        with downloader.running(_requests(actions, fetched, locate), push) as downloads:
            results.update((i, other(a)) for i, a in enumerate(actions)
                           if not moves_bytes(a) and a.kind != "retire")
            pushed = deferred + [upload for download in downloads.values() for upload in download.result()]
            results.update(_retire_per_target(actions, pushed, other))
    return [results[i] for i in range(len(actions))]


def _retire_per_target(actions: Sequence[Action], pushed: Sequence[tuple[str, Future[tuple[int, T]]]],
                       other: Callable[[Action], T]) -> dict[int, T]:
    """Every push's result and every retirement's; a target's retirements start once its own pushes are over
    (invariant 3 is about what one target holds), so a slow target holds back no other's retirements."""
    targets = {a.target for a in actions if a.kind == "retire"} | {target for target, _ in pushed}
    with ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="retire") as pool:
        jobs = [pool.submit(_after_pushes, [f for t, f in pushed if t == target],
                            [(i, a) for i, a in enumerate(actions) if a.kind == "retire" and a.target == target],
                            other) for target in sorted(targets)]
    return {i: result for job in jobs for i, result in job.result().items()}


def _after_pushes(pushes: Sequence[Future[tuple[int, T]]], retirements: Sequence[tuple[int, Action]],
                  other: Callable[[Action], T]) -> dict[int, T]:
    done = dict(push.result() for push in pushes)
    done.update((i, other(action)) for i, action in retirements)
    return done


def _indexed(index: int, step: Callable[[Action, Fetched], T], action: Action,
             fetched: Fetched) -> Callable[[], tuple[int, T]]:
    return lambda: (index, step(action, fetched))


def _requests(actions: Sequence[Action], by_sha: Mapping[str, list[int]],
              locate: Callable[[DesiredImage], ImageLocation]) -> list[DownloadRequest]:
    requests = []
    for indexes in by_sha.values():
        first = actions[indexes[0]]
        assert first.desired is not None
        image = first.desired.image
        where = locate(first.desired)
        requests.append(DownloadRequest(sha512=image.sha512, sha256=image.sha256, size=image.size, url=where.url,
                                        headers=where.headers, name=f"{first.list_name}/{first.identifier}"))
    return requests


@contextmanager
def _lanes(widths: Mapping[str, int]) -> Iterator[Callable[[str, Callable[[], T]], Future[T]]]:
    """One thread pool per target; leaving the block waits for every job submitted."""
    with ExitStack() as stack:
        pools = {target: stack.enter_context(ThreadPoolExecutor(max_workers=max(1, width),
                                                                thread_name_prefix=f"upload-{target}"))
                 for target, width in widths.items()}

        def submit(target: str, job: Callable[[], T]) -> Future[T]:
            return pools[target].submit(job)

        yield submit
