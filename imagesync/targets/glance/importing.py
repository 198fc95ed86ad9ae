"""Glance fetches or imports the bytes itself (a target's ``upload: web-download | glance-direct | auto``).

With ``web-download`` Glance downloads the image from its list URL, so the bytes need not leave the sync host.
What Glance 33.0.0 (the devcloud's; git abc1077f1) can check on the way: nothing. Its import call reads only
``method.name`` and ``method.uri`` (glance/api/v2/images.py ``import_image``, web_download.py); an expected hash
(``validation_data`` with ``os_hash_algo``/``os_hash_value``) is accepted only by the add-location API (``POST
/v2/images/{id}/locations``), which points the image at the remote URL instead of copying it and needs the http
store. So imagesync sends no hash (a key Glance ignores would only look like a check) and checks the result itself.

Invariant 2 holds although imagesync never saw the bytes Glance stored: the image is created private, unshared,
carrying our tag (so a later run finds and deletes it) and :data:`~imagesync.targets.glance.inventory.PENDING`
(so the inventory never takes it for a finished image, whatever its status), without imagesync's properties.
Only when Glance's ``os_hash_value`` and ``size`` equal the expected sha512 and size are the properties and the
visibility written and the marker removed; the caller shares it then, exactly as after a direct upload.

A failed, refused, stuck (``import_timeout``) or mismatching import is deleted and the caller uploads directly.
After :data:`GIVE_UP` such imports in a row on one target, the rest of the run uploads there directly, saying so
once: what failed twice in a row is the cloud's setting (its allowed hosts, its stores, no route to the image
host), and each further image would wait for its own failure (up to ``import_timeout``) before uploading anyway.
The next run tries importing again.
When every target of an image pulls it (``pulls``, asked before any download), the executor does not download it
and the Upload has no path: the direct fallback then asks for the bytes (``Upload.local``), downloaded once for
all the targets that fall back (:mod:`imagesync.run.pull`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Image
from imagesync.targets.base import TargetError, Upload
from imagesync.targets.glance.inventory import PENDING
from imagesync.util import redact

log = logging.getLogger(__name__)
PULL = "web-download"
STAGE = "glance-direct"
_AT_CREATION = ("name", "disk_format", "container_format", "tags")
_POLL_FIRST = 0.5
_POLL_MAX = 5.0


GIVE_UP = 2


class Streak:
    """Imports that failed in a row on one target, over all its projects' importers; thread-safe."""

    def __init__(self) -> None:
        self.failed = 0
        self._lock = threading.Lock()

    @property
    def given_up(self) -> bool:
        return self.failed >= GIVE_UP

    def note(self, ok: bool) -> bool:
        """Count one import; True when this failure is the one that gives up."""
        with self._lock:
            self.failed = 0 if ok else self.failed + 1
            return self.failed == GIVE_UP


class ImportFailed(TargetError):
    """Glance's import did not end in an active image of the expected bytes; the image must be deleted."""


def source_problem(upload: Upload) -> str | None:
    """Why Glance cannot fetch ``upload``'s bytes from the image's URL itself (None: it can). Raises nothing."""
    image = upload.desired.image
    if upload.sha512 != image.sha512 or upload.size != image.size:
        return "it is converted before upload (Glance would get the unconverted bytes)"
    return url_problem(image)


def url_problem(image: Image) -> str | None:
    """Why Glance cannot fetch ``image`` from its URL (None: it can). Raises nothing."""
    if image.sha256:
        return "its source is an OCI registry (the blob needs a token)"
    url = urlsplit(image.uri)
    if url.scheme not in ("http", "https"):
        return f"its URL is not http(s) ({url.scheme or 'no scheme'})"
    if url.username or url.password:
        return "its URL carries a token"
    return None


def import_body(method: str, uri: str | None, settings: TargetSettings) -> dict[str, Any]:
    """The JSON body of ``POST /v2/images/{id}/import``. Pure; raises nothing."""
    body: dict[str, Any] = {"method": {"name": method, **({"uri": uri} if uri else {})}}
    if settings.stores:
        body["stores"] = list(settings.stores)
    if settings.all_stores:
        body["all_stores"] = True
    return body


class Importer:
    """Adds images through Glance's import; ``add`` returns None whenever the caller must upload directly."""

    def __init__(self, settings: TargetSettings, *, client: Callable[[], Any], images: Any,
                 calls: Callable[[str], AbstractContextManager[None]], verify: Callable[[str, Upload], None],
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 streak: Streak | None = None) -> None:
        """``streak`` is shared by the importers of one target (one per project it imports into)."""
        self.settings = settings
        self._streak = streak or Streak()
        self._client = client
        self._images = images  # keystoneauth1 adapter of the image API
        self._calls = calls
        self._verify = verify
        self._sleep = sleep
        self._clock = clock
        self._offered: tuple[str, ...] | None = None
        self._told: set[str] = set()

    def method(self, upload: Upload) -> str:
        """How ``upload`` gets into Glance: ``direct``, ``web-download`` or ``glance-direct``; why not the
        configured method is logged once per reason. Raises nothing."""
        wanted = self.settings.upload
        if wanted == STAGE and self._streak.given_up:
            return self._pull_or_direct(None)
        if wanted in ("direct", STAGE):
            return wanted
        return self._pull_or_direct(source_problem(upload))

    def pulls(self, desired: DesiredImage, disk_format: str) -> bool:
        """True when Glance will fetch ``desired``, unconverted in ``disk_format``, from its URL itself (so
        it need not be downloaded here). Raises nothing."""
        if self.settings.upload not in ("auto", PULL) or disk_format != (desired.image.format or "").lower():
            return False
        return self._pull_or_direct(url_problem(desired.image)) == PULL

    def _pull_or_direct(self, problem: str | None) -> str:
        wanted = self.settings.upload
        if problem is None and self._streak.given_up:
            problem = f"importing failed {GIVE_UP} times in a row this run"
        if problem is None and wanted == "auto" and PULL not in self.offered():
            problem = f"the cloud offers no {PULL} import (only {', '.join(self.offered()) or 'none'})"
        if problem is not None:
            self._tell(f"target={self.settings.name} upload={wanted}: direct upload for images where {problem}",
                       problem)
            return "direct"
        return PULL

    def offered(self) -> tuple[str, ...]:
        """The import methods the cloud offers (``GET /v2/info/import``), asked once; none when it cannot say
        (a Glance without the import API answers 404), so ``auto`` uploads directly. Raises nothing."""
        if self._offered is None:
            try:
                with self._calls("ask which import methods Glance offers"):
                    body = self._images.get("/v2/info/import").json()
                self._offered = tuple(body.get("import-methods", {}).get("value", ()))
            except TargetError as exc:
                log.info("target=%s upload=auto: direct upload (%s)", self.settings.name, exc.one_line())
                self._offered = ()
        return self._offered

    def add(self, upload: Upload, fields: Mapping[str, Any], visibility: str) -> str | None:
        """Create the image from ``fields`` and import ``upload`` into it; return its id once verified and given
        its properties and ``visibility``, or None (nothing left in Glance) when the caller must upload directly.
        Raises TargetError when the image cannot even be created."""
        method = self.method(upload)
        if method == "direct":
            return None
        identifier = upload.desired.image.identifier
        with self._calls(f"create image for {identifier}"):
            created = {key: fields[key] for key in _AT_CREATION}
            image_id = str(self._client().images.create(**created, visibility="private", **{PENDING: method})["id"])
        try:
            active = self._import(image_id, upload, method)
            self._verify(image_id, upload)
            self._finish(image_id, fields, visibility, active)
        except TargetError as exc:
            self._delete(image_id)
            log.warning("target=%s image=%s %s import failed (%s): image deleted, uploading directly",
                        self.settings.name, identifier, method, exc.one_line())
            if self._streak.note(ok=False):
                log.warning("target=%s upload=%s: %d imports failed in a row; uploading directly for the rest of "
                            "this run", self.settings.name, self.settings.upload, GIVE_UP)
            return None
        except BaseException:
            self._delete(image_id)
            raise
        self._streak.note(ok=True)
        return image_id

    def _import(self, image_id: str, upload: Upload, method: str) -> Mapping[str, Any]:
        if method == STAGE:
            with upload.local_path().open("rb") as handle, self._calls(f"stage {upload.desired.image.identifier}"):
                self._client().images.stage(image_id, handle, image_size=upload.size)
        uri = upload.desired.image.uri if method == PULL else None
        with self._calls(f"{method} import of {redact.url(uri) if uri else image_id}"):
            self._images.post(f"/v2/images/{image_id}/import", json=import_body(method, uri, self.settings))
        active = self._wait(image_id)
        algo = active.get("os_hash_algo")
        if algo != "sha512":
            # A direct upload is checked while imagesync streams it; imported bytes only through this hash.
            raise ImportFailed(f"Glance hashes {image_id} with {algo}, not sha512: the imported bytes cannot be "
                               "checked", subject=f"target {self.settings.name}")
        return active

    def _wait(self, image_id: str) -> Mapping[str, Any]:
        """Poll until the image is active. Raises ImportFailed (failed, gone, or not active within
        ``import_timeout``), TargetError."""
        deadline = self._clock() + self.settings.import_timeout
        pause = _POLL_FIRST
        while True:
            with self._calls(f"check import of {image_id}"):
                image = self._client().images.get(image_id)
            status = image["status"]
            if status == "active":
                return dict(image)
            if image.get("os_glance_failed_import") or status in ("killed", "deleted", "deactivated"):
                raise ImportFailed(f"Glance failed the import of {image_id} (status {status})",
                                   subject=f"target {self.settings.name}")
            if self._clock() >= deadline:
                raise ImportFailed(f"import of {image_id} not active after {self.settings.import_timeout:g}s "
                                   f"(import_timeout; status {status})", subject=f"target {self.settings.name}")
            self._sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def _finish(self, image_id: str, fields: Mapping[str, Any], visibility: str, active: Mapping[str, Any]) -> None:
        later = {key: value for key, value in fields.items() if key not in _AT_CREATION}
        if active.get("virtual_size") and not int(later.get("min_disk") or 0):
            # An image not downloaded here had no virtual size to derive min_disk from: Glance measured it.
            later["min_disk"] = -(-int(active["virtual_size"]) // 1024**3)
        with self._calls(f"write the properties of {image_id}"):
            self._client().images.update(image_id, remove_props=[PENDING], visibility=visibility, **later)

    def _delete(self, image_id: str) -> None:
        try:
            self._client().images.delete(image_id)
        except Exception as exc:
            log.warning("target=%s could not delete imported image %s: %s", self.settings.name, image_id,
                        redact.text(str(exc)))

    def _tell(self, line: str, reason: str) -> None:
        # Once per reason and driver: a list of 300 converted images says so once, not 300 times.
        if reason not in self._told:
            self._told.add(reason)
            log.info("%s", line)

