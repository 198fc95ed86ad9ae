"""What a Glance target checks of an upload: the image Glance made holds exactly the bytes imagesync sent (DESIGN
§6: ``os_hash_value`` and size), and how those bytes are handed to glanceclient (again after a failure that
left the image ``queued``, so the retry starts from an empty image)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import IO, Any

from imagesync.targets.base import TargetError, Upload
from imagesync.targets.glance.errors import TargetCallError
from imagesync.util.meters import Meter

log = logging.getLogger(__name__)
_READ_SIZE = 64 * 1024
UPLOAD_ATTEMPTS = 3


def verify(client: Any, image_id: str, upload: Upload, *, target: str,
           calls: Callable[[str], AbstractContextManager[None]]) -> None:
    """Check that ``image_id`` is active with ``upload``'s size and sha512 (through ``client``, of the project
    that owns it). Raises TargetError when it is not (the caller deletes it)."""
    with calls(f"check image {image_id}"):
        image = client.images.get(image_id)
    if image["status"] != "active":
        raise TargetError(f"image {image_id} is {image['status']} after upload, not active", subject=f"target {target}")
    if int(image.get("size") or -1) != upload.size:
        raise TargetError(f"Glance holds {image.get('size')} bytes of {image_id}, {upload.size} were uploaded: "
                          "image deleted", subject=f"target {target}")
    algo, value = image.get("os_hash_algo"), image.get("os_hash_value")
    if algo == "sha512" and value != upload.sha512:
        raise TargetError(f"Glance's os_hash_value of {image_id} ({str(value)[:16]}...) differs from the "
                          f"uploaded file's sha512 ({upload.sha512[:16]}...): image deleted",
                          subject=f"target {target}")
    if algo != "sha512":
        log.warning("target=%s Glance hashes with %s, not sha512: upload not cross-checked", target, algo)


class UploadReads:
    """Hands glanceclient 64 KiB per read instead of its 1 MiB: measured behind gunicorn, big chunks of a chunked
    upload cost the server more copying than they save (bench/glance.py --read-size compares). Each read is
    counted on ``meter``."""

    def __init__(self, handle: IO[bytes], meter: Meter) -> None:
        self._handle = handle
        self._meter = meter

    def read(self, _size: int = -1) -> bytes:
        block = self._handle.read(_READ_SIZE)
        self._meter.update(len(block))
        return block


def send(client: Any, image_id: str, upload: Upload, *, target: str,
         calls: Callable[[str], AbstractContextManager[None]], sleep: Callable[[float], None]) -> None:
    """Stream ``upload``'s file into ``image_id``; up to UPLOAD_ATTEMPTS times while a retryable failure leaves the
    image ``queued``. Raises TargetCallError (what ``calls`` makes of glanceclient's errors)."""
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        upload.meter.reset()
        try:
            with upload.local_path().open("rb") as handle, calls(f"upload {upload.desired.image.identifier}"):
                client.images.upload(image_id, UploadReads(handle, upload.meter), image_size=upload.size)
            return
        except TargetCallError as exc:
            if not exc.retryable or attempt == UPLOAD_ATTEMPTS or _status(client, image_id) != "queued":
                raise
            log.warning("target=%s image=%s upload attempt %d failed (%s); retrying", target,
                        upload.desired.image.identifier, attempt, exc.message)
            sleep(2.0 * attempt)


def _status(client: Any, image_id: str) -> str | None:
    try:
        return str(client.images.get(image_id)["status"])
    except Exception:
        return None
