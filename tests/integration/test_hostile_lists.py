"""Validly signed but hostile lists fail alone, with one line naming them; the other lists go on (issue 7)."""

from __future__ import annotations

import yaml

from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, DemoWorld, demo_images
from imagesync.errors import EXIT_PARTIAL
from imagesync.run.pipeline import sync
from imagesync.state.store import StateStore

GOOD_PATH = "/store/vo/good/image.list"


def _two_lists(world: DemoWorld, bad: list[DemoImage]) -> config.Settings:
    """``good`` carries the demo images; ``demo`` carries ``bad``; both really signed by the demo signer."""
    world.server.put(GOOD_PATH, world.publish(demo_images("1.0")))
    world.publish(bad)
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    data = yaml.safe_load(path.read_text())
    data["lists"]["good"] = {**data["lists"]["demo"], "url": world.server.url(GOOD_PATH)}
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def test_a_lone_surrogate_fails_its_list_alone(world: DemoWorld) -> None:
    image = demo_images("2.0")[0]
    hostile = DemoImage(identifier=image.identifier, version=image.version, title="evil \ud800 title",
                        data=image.data)
    settings = _two_lists(world, [hostile])
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    outcome = {o.settings.name: o for o in result.lists}
    assert outcome["good"].status == "ok"
    error = outcome["demo"].error or ""
    assert outcome["demo"].status == "failed" and error.startswith("demo: ") and "surrogate" in error
    assert "\n" not in error
    assert sorted((r.action.list_name, r.action.kind, r.status) for r in result.results) == [
        ("good", "add", "done"), ("good", "add", "done")]
    with StateStore.open(settings.state_dir) as store:
        assert {i.list_name for i in store.images()} == {"good"}
        assert store.get_list("demo") is not None


def test_the_same_list_subscribed_twice_is_refused_the_second_time(world: DemoWorld) -> None:
    images = demo_images("1.0")
    settings = _two_lists(world, images)  # both URLs serve one list: one dc:identifier
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    outcome = {o.settings.name: o for o in result.lists}
    assert outcome["demo"].status == "ok"
    assert outcome["good"].status == "failed"
    assert (outcome["good"].error or "").startswith("good: same list as demo (dc:identifier ")
    assert sorted((r.action.list_name, r.action.kind) for r in result.results) == [("demo", "add"), ("demo", "add")]
