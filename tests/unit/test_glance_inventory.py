"""When the Glance inventory lists hidden images too (imagesync.targets.glance.inventory): a plain table."""

from __future__ import annotations

import pytest

from imagesync.targets.glance.inventory import needs_hidden_listing


@pytest.mark.parametrize(("known", "listed", "hidden_too"), [
    (None, [], True),  # no state at hand (imagesync check, the demo): everything
    (None, ["a"], True),
    (set(), [], True),  # a first run, or a lost state.db: hidden images of ours must still be found
    (set(), ["a", "b"], True),
    ({"a"}, ["a"], False),  # every remembered image is visible: nothing of ours can be hidden
    ({"a"}, ["a", "b"], False),  # an image the state does not know yet (an unrecorded upload) is visible
    ({"a", "b"}, ["a"], True),  # b is hidden (retire: hide, perhaps killed before it was recorded) or gone
    ({"a"}, [], True),
])
def test_hidden_images_are_listed_only_when_the_plain_listing_may_miss_one(
        known: set[str] | None, listed: list[str], hidden_too: bool) -> None:
    assert needs_hidden_listing(known, listed) is hidden_too
