"""What the Glance target holds: as few listings as the truth allows, in pages as large as Glance serves.

A no-op run spends most of its time here, so the inventory asks Glance once where it can. Two choices decide it:

**Page size.** Glance serves ``min(limit, api_limit_max)`` images per page (``api_limit_max`` defaults to 1000) and
never refuses a larger ``limit``, so asking for :data:`PAGE_SIZE` gets the largest page the server allows; the rest
follows page by page. glanceclient would ask for 200 and page five times as often.

**Hidden images.** Glance leaves images with ``os_hidden`` out of every listing that does not ask for them, and an
image of ours is hidden only by ``retire: hide`` (or by hand). A second listing, of the hidden images, is made only
when the plain one may not be the whole truth (:func:`needs_hidden_listing`):

- the caller knows nothing (``known`` is None: ``imagesync check``, the demo) or the state remembers no image in
  this target (a first run, a lost or new state.db): hidden images of ours must be found, else the plan would
  upload a duplicate beside a hidden copy instead of reactivating it;
- an image the state remembers is missing from the plain listing: it is hidden (by a hide retirement, also one
  a kill interrupted before the state recorded it, or by hand) or gone, and only the hidden listing tells which.
  Without it, reconciliation would take a hidden image for deleted and lose track of it.

That is enough because the plan retires (and so hides) only images the state remembers by id, and the state
forgets an id only when the image is gone: deleted by imagesync itself, or missing from an inventory that by this
very rule included the hidden listing. So while the state remembers any image of a target, it remembers every
image of ours hidden there. A retired, hidden image therefore costs the
second listing on every run, as it must until ``delete_after`` deletes it. The rule does not depend on the
retire mode, so a target whose mode changed from ``hide`` keeps finding the images hidden before.
What it cannot see: a state.db restored from an older copy does not remember images hidden after that copy was
taken; move it aside (a fresh state lists everything, then adopts) rather than restore an old one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from imagesync.model import Held

# Far above Glance's default cap (1000): the server serves the largest page it allows; this bounds one answer
# (about 3 KB of JSON an image) where an operator raised api_limit_max.
PAGE_SIZE = 10_000
LIVE = ("active", "deactivated")
ORPHAN = ("queued", "saving", "killed", "importing", "uploading")
# Set on an image Glance imports itself until imagesync has checked its bytes (imagesync.targets.glance.importing):
# such an image is never ours to keep, whatever its status, so a run killed after the import is cleaned up.
PENDING = "imagesync_pending"


def is_orphan(image: Mapping[str, Any]) -> bool:
    """Whether ``image`` (carrying our tag) is left over half-done: to be deleted, never used. Raises nothing."""
    return image["status"] in ORPHAN or PENDING in image


def is_live(image: Mapping[str, Any]) -> bool:
    """Whether ``image`` (carrying our tag) is a finished, verified image of ours. Raises nothing."""
    return image["status"] in LIVE and PENDING not in image


def needs_hidden_listing(known: Collection[str] | None, listed: Iterable[str]) -> bool:
    """Whether hidden images must be listed too, given the target ids the state remembers in this target
    (``known``; None when the caller has no state) and those the plain listing returned. Pure; raises nothing."""
    if not known:
        return True
    return not set(known) <= set(listed)


def list_images(images: Any, query: Mapping[str, str], *, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Every image matching ``query``, by id, page after page (Glance's ``next`` link), through ``images``, a
    keystoneauth1 adapter of the image API. Raises the adapter's exceptions (keystoneauth1's)."""
    found: dict[str, Any] = {}
    url: str | None = "/v2/images?" + urlencode({**query, "limit": str(page_size)})
    while url:
        body = images.get(url).json()
        found.update((image["id"], image) for image in body["images"])
        url = body.get("next")
    return found


def held(image: Mapping[str, Any], *, misplaced: bool = False) -> Held:
    """The driver-neutral view of one Glance image carrying our tag; ``misplaced`` when it lives outside the
    project it belongs in (:mod:`imagesync.targets.glance.owners`)."""
    return Held(target_id=str(image["id"]), list_name=image.get("imagesync_list"),
                identifier=image.get("imagesync_image_id"), version=image.get("imagesync_version"),
                sha512=image.get("imagesync_sha512"),
                active=image["status"] == "active" and not image.get("os_hidden", False),
                digest=image.get("imagesync_digest"), name=image.get("name"), vo=image.get("ad_vo"),
                disk_format=image.get("disk_format"), size=image.get("size"), misplaced=misplaced)
