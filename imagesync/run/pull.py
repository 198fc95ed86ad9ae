"""Images every target pulls itself (issue 11): not downloaded before the push, downloaded once if one falls back.

When each target of an image answers ``pulls`` (a Glance target with ``upload: web-download``, or ``auto`` where
the cloud offers it, for an image whose URL needs no token and no conversion), the bytes need not cross this host:
the image's adds get a :class:`Deferred` instead of a download, and their drivers an Upload without a path. A
driver whose import failed asks for the bytes (``Upload.local``); the first ask downloads them (the same
verified, cached download as always), the others wait for it and share it. The state of such a copy still
passes through ``downloaded`` (the lifecycle's one way to ``uploading``); the report tells the bytes apart:
``bytes_pulled`` for what a target fetched itself, ``bytes_uploaded`` only for what was sent from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from imagesync.images.download import Downloaded, Downloader, DownloadError, DownloadRequest
from imagesync.model import Action
from imagesync.sources.base import ImageLocation
from imagesync.targets.base import Driver, Upload


class Deferred:
    """One image's download, made on the first :meth:`get` only; thread-safe."""

    def __init__(self, downloader: Downloader, request: DownloadRequest) -> None:
        self.request = request
        self._downloader = downloader
        self._lock = threading.Lock()
        self._outcome: Downloaded | DownloadError | None = None

    def get(self) -> Downloaded:
        """The verified image, downloaded now unless an earlier call did. Raises DownloadError (every call after a
        failed download raises it again: one attempt per run, as for any other image)."""
        with self._lock:
            if self._outcome is None:
                try:
                    self._outcome = self._downloader.fetch(self.request)
                except DownloadError as exc:
                    self._outcome = exc
            if isinstance(self._outcome, DownloadError):
                raise self._outcome
            return self._outcome


class Fallback:
    """The ``fetch`` of one remote Upload: remembers whether its driver needed the bytes (for the report)."""

    def __init__(self, make: Callable[[], Upload]) -> None:
        self._make = make
        self.used = False

    def __call__(self) -> Upload:
        self.used = True
        return self._make()


def remote(action: Action, fallback: Fallback) -> Upload:
    """The Upload of an image its target pulls itself: the list's size and sha512 are what it must confirm."""
    assert action.desired is not None
    image = action.desired.image
    # virtual_size is unknown without the bytes: Glance measures it while importing (min_disk is taken from it).
    return Upload(desired=action.desired, path=None, disk_format=(image.format or "").lower(), virtual_size=0,
                  size=image.size, sha512=image.sha512, fetch=fallback)


def pulls(action: Action, driver: Driver, formats: tuple[str, ...], where: ImageLocation) -> bool:
    """True when ``driver`` fetches ``action``'s image itself, unconverted, from ``where`` (which must need no
    headers: a target cannot be handed our credentials). Raises nothing."""
    asked: Callable[..., bool] | None = getattr(driver, "pulls", None)
    desired = action.desired
    if asked is None or desired is None or action.kind not in ("add", "update") or where.headers is not None:
        return False
    image = desired.image
    declared = (image.format or "").lower()
    if where.url != image.uri or declared not in formats or not (image.sha512 and image.size):
        return False  # elsewhere than the list says, converted, or not checkable without the bytes
    return bool(asked(desired, declared))


def got(fetched: Downloaded | Deferred) -> Downloaded:
    """The downloaded image (downloading it now if it was deferred). Raises DownloadError."""
    return fetched.get() if isinstance(fetched, Deferred) else fetched
