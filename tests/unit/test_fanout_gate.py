"""The pieces of :mod:`imagesync.run.fanout` on their own: the gate's bound and deadlines, connecting many targets,
and the two settings."""

from __future__ import annotations

import threading
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.config.settings import TargetSettings
from imagesync.errors import ConfigError
from imagesync.model import Action, Held
from imagesync.run import fanout
from imagesync.targets.base import Capabilities, Driver, TargetError


def action(kind: str, target: str = "t") -> Action:
    return Action(target=target, list_name="l", identifier="i", version="1", kind=kind,  # type: ignore[arg-type]
                  reason="test")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_past_the_deadline_nothing_starts_but_keeps_and_targets_without_one_go_on() -> None:
    clock = Clock()
    gate = fanout.Gate(2, {"t": 110.0, "free": None}, clock=clock)
    assert gate.run(action("add"), lambda: "ran", late=lambda: "late") == "ran"
    clock.now = 110.5
    assert [gate.run(action(kind), lambda: "ran", late=lambda: "late") for kind in ("add", "retire", "keep")] == [
        "late", "late", "ran"]
    assert gate.run(action("add", "free"), lambda: "ran", late=lambda: "late") == "ran"


def test_a_target_waits_for_a_place_unless_it_is_already_at_work() -> None:
    gate = fanout.Gate(1, {})
    entered: list[str] = []
    with gate.entered("a"):
        with gate.entered("a"):  # the same target: no wait, or this would hang
            entered.append("a twice")
        waiter = threading.Thread(target=lambda: gate.run(action("add", "b"), lambda: entered.append("b"),
                                                          late=lambda: None))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and entered == ["a twice"]  # b waits while a holds the only place
    waiter.join(5)
    assert entered == ["a twice", "b"]


class Fake:
    """A driver that holds nothing, fails as told, and remembers whether it was closed."""

    capabilities = Capabilities(formats=("raw",), retire_modes=("delete",))

    def __init__(self, name: str, failure: Exception | None = None) -> None:
        self.name = name
        self.failure = failure
        self.closed = False

    def inventory(self, *, known: Collection[str] | None = None) -> list[Held]:
        if self.failure is not None:
            raise self.failure
        return []

    def close(self) -> None:
        self.closed = True


def connect_all(fakes: dict[str, Fake]) -> list[fanout.Connected]:
    targets = [TargetSettings(name=name, driver="noop") for name in fakes]

    def connect(target: TargetSettings) -> Driver:
        return fakes[target.name]  # type: ignore[return-value]  # only inventory and close are called

    return fanout.connect_all(targets, width=2, connect=connect, remembered={})


def test_an_unreachable_target_is_an_outcome_in_order_and_its_driver_closed() -> None:
    fakes = {"a": Fake("a"), "down": Fake("down", TargetError("HTTP 503")), "c": Fake("c")}
    outcomes = connect_all(fakes)
    assert [(o.target.name, o.error) for o in outcomes] == [("a", None), ("down", "target down: HTTP 503"),
                                                            ("c", None)]
    assert [f.closed for f in fakes.values()] == [False, True, False]


def test_a_bad_target_setting_closes_every_driver_and_is_raised() -> None:
    fakes = {"a": Fake("a"), "bad": Fake("bad", ConfigError("targets.bad.region: no such region")), "c": Fake("c")}
    with pytest.raises(ConfigError, match="no such region"):
        connect_all(fakes)
    assert all(f.closed for f in fakes.values())


@pytest.mark.parametrize(("extra", "concurrency", "deadline"), [
    ({}, 4, None),
    ({"targets_concurrency": 8}, 8, None),
    ({"deadline": "2h"}, 4, timedelta(hours=2)),
    ({"deadline": None}, 4, None),
])
def test_the_settings(extra: dict[str, object], concurrency: int, deadline: timedelta | None) -> None:
    top = {k: v for k, v in extra.items() if k == "targets_concurrency"}
    target = {"driver": "noop", **{k: v for k, v in extra.items() if k == "deadline"}}
    loaded = config.from_mapping({**top, "targets": {"t": target}}, source=Path("/tmp/x.yaml"))
    assert (loaded.targets_concurrency, loaded.targets[0].deadline) == (concurrency, deadline)


@pytest.mark.parametrize(("raw", "problem"), [
    ({"targets_concurrency": 0, "targets": {"t": {"driver": "noop"}}}, "targets_concurrency: 0 is out of range"),
    ({"targets": {"t": {"driver": "noop", "deadline": "soon"}}}, "targets.t.deadline: 'soon' is not a duration"),
])
def test_bad_settings_are_named(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        config.from_mapping(raw, source=Path("/tmp/x.yaml"))


def test_every_site_takes_its_deadline_from_site_defaults(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    for name in ("A", "B"):
        (tmp_path / "sites" / f"{name}.yaml").write_text(yaml.safe_dump({
            "gocdb": name, "endpoint": f"https://{name.lower()}.example.org:5000/v3", "images": {"sync": True},
            "vos": [{"name": "ops", "auth": {"project_id": "0" * 32}}]}))
    defaults = {"auth": {"auth_type": "password", "username": "u", "password": "p"}, "deadline": "90m"}
    loaded = config.from_mapping({"sites_dir": "sites", "site_defaults": defaults, "targets_concurrency": 16},
                                 source=tmp_path / "imagesync.yaml")
    assert [(t.name, t.deadline) for t in loaded.targets] == [("A", timedelta(minutes=90)),
                                                              ("B", timedelta(minutes=90))]
    assert loaded.targets_concurrency == 16
