"""Routing images to the project that owns them (imagesync.targets.glance.owners), and the plan's answer to a copy
held in the wrong project: fakes for the Keystone logins, no cloud."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

import pytest
from keystoneauth1 import exceptions as ks_exc

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Held, Image, Known, ListDesire, TargetPolicy
from imagesync.run.plan import diff
from imagesync.targets import properties
from imagesync.targets.base import TargetError
from imagesync.targets.glance.auth import AuthSpec
from imagesync.targets.glance.owners import Owners, Route

OWN = "own0"
OWN_ROUTE = Route(project=None, client=lambda: "own client", images="own images")
MAPPING: dict[str, str | TargetError] = {"alpha.vo": "p-alpha", "beta.vo": "p-beta", "also.vo": "p-alpha",
                                         "home.vo": OWN, "broken.vo": TargetError("VO broken.vo: no role")}


@dataclass
class FakeSession:
    """A keystoneauth1 session whose logins answer from ``answers`` (an exception to raise, or None)."""

    answers: list[Exception | None]
    logins: int = 0

    def get_token(self) -> str:
        self.logins += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return "token"


@dataclass
class FakeSpec:
    answers: list[Exception | None] = field(default_factory=list)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    region: str | None = None
    interface: str = "public"
    options: dict[str, str] = field(default_factory=dict)

    def session(self, *, project_id: str) -> FakeSession:
        self.sessions[project_id] = FakeSession(self.answers)
        return self.sessions[project_id]


def owners(ownership: str = "per-project", spec: FakeSpec | None = None,
           mapping: dict[str, str | TargetError] | None = None) -> Owners:
    settings = replace(TargetSettings(name="cloud", driver="glance"), ownership=ownership)  # type: ignore[arg-type]
    table = MAPPING if mapping is None else mapping
    return Owners(settings, spec=cast(AuthSpec, spec or FakeSpec()), own=OWN_ROUTE, own_id=lambda: OWN,
                  glance=lambda session: ("client of", session), mapping=lambda: table, sleep=lambda _: None)


def desired(vo: str | None, version: str = "1") -> DesiredImage:
    image = Image(identifier="a", uri="https://h/a", sha512="1" * 128, size=10, version=version, title="T",
                  description=None, arch=None, os_name=None, os_version=None, format=None, vo=vo, ram_minimum=None,
                  core_minimum=None, mpuri=None, expires=None, attributes=MappingProxyType({"dc:title": "T"}))
    return DesiredImage(list_name="L", list_identifier="lid", image=image)


@pytest.mark.parametrize(("ownership", "vo", "expected"), [
    ("shared", "alpha.vo", None),
    ("shared", None, None),
    ("per-project", "alpha.vo", "p-alpha"),
    ("per-project", "home.vo", OWN),
])
def test_the_project_an_image_is_created_in(ownership: str, vo: str | None, expected: str | None) -> None:
    assert owners(ownership).project_for(desired(vo)) == expected


@pytest.mark.parametrize(("vo", "message"), [
    ("gamma.vo", "VO gamma.vo of a has no project in None"),
    (None, "VO (none) of a has no project in None"),
    ("broken.vo", "VO broken.vo: no role"),
])
def test_an_image_without_a_usable_project_fails_per_project(vo: str | None, message: str) -> None:
    with pytest.raises(TargetError) as caught:
        owners().project_for(desired(vo))
    assert caught.value.message == message


def test_shared_lists_the_own_project_only_and_never_logs_in() -> None:
    spec = FakeSpec()
    assert owners("shared", spec).listed() == [OWN_ROUTE]
    assert spec.sessions == {}


def test_per_project_lists_each_usable_project_once_with_its_own_login() -> None:
    spec = FakeSpec()
    routes = owners(spec=spec).listed()
    # p-alpha serves two VOs; the own project is reached by the driver's client; broken.vo has no project.
    assert [r.project for r in routes] == [None, "p-alpha", "p-beta"]
    assert {p: s.logins for p, s in spec.sessions.items()} == {"p-alpha": 1, "p-beta": 1}
    assert routes[1].client() == ("client of", spec.sessions["p-alpha"])


def test_routes_are_made_once_per_project() -> None:
    spec = FakeSpec()
    routing = owners(spec=spec)
    assert routing.route("p-beta") is routing.route("p-beta")
    assert routing.route(OWN) is OWN_ROUTE and routing.route(None) is OWN_ROUTE
    assert list(spec.sessions) == ["p-beta"]


def test_calls_on_an_image_go_to_the_project_it_was_found_in() -> None:
    routing = owners()
    alpha = routing.route("p-alpha")
    routing.remember("img-1", alpha)
    routing.remember("img-2", OWN_ROUTE)
    assert routing.of("img-1") is alpha
    assert routing.of("img-2") is OWN_ROUTE
    assert routing.of("never-listed") is OWN_ROUTE


def test_a_login_answered_5xx_is_tried_once_more() -> None:
    spec = FakeSpec(answers=[ks_exc.InternalServerError(http_status=500)])
    route = owners(spec=spec).route("p-alpha")
    assert route.project == "p-alpha" and spec.sessions["p-alpha"].logins == 2


def test_the_own_login_is_tried_once_more_after_a_5xx_and_not_after_a_refusal() -> None:
    """Before: the own project's login happened inside the first listing, unserialised and never retried, so a
    Keystone on SQLite answering two targets' logins at once with 500 failed a target (seen in CI)."""
    answers: list[Exception] = [ks_exc.InternalServerError(http_status=500)]

    def own_id() -> str:
        if answers:
            raise answers.pop(0)
        return OWN

    settings = TargetSettings(name="cloud", driver="glance")
    routing = Owners(settings, spec=cast(AuthSpec, FakeSpec()), own=OWN_ROUTE, own_id=own_id,
                     glance=lambda session: session, mapping=lambda: MAPPING, sleep=lambda _: None)
    routing.log_in()
    assert answers == []
    answers.append(ks_exc.Unauthorized(http_status=401))
    with pytest.raises(ks_exc.Unauthorized):
        routing.log_in()


@pytest.mark.parametrize("answers", [
    [ks_exc.InternalServerError(http_status=500), ks_exc.InternalServerError(http_status=500)],
    [ks_exc.Unauthorized(http_status=401)],
])
def test_a_login_fails_after_one_retry_or_at_once_when_refused(answers: list[Exception | None]) -> None:
    spec = FakeSpec(answers=list(answers))
    with pytest.raises(ks_exc.HttpError):
        owners(spec=spec).route("p-alpha")
    assert spec.sessions["p-alpha"].logins == len(answers)


@pytest.mark.parametrize(("ownership", "vo", "project", "expected"), [
    ("per-project", "alpha.vo", "p-alpha", False),
    ("per-project", "alpha.vo", None, True),  # the shared copy in imagesync's own project
    ("per-project", "beta.vo", "p-alpha", True),  # the mapping changed
    ("per-project", "home.vo", None, False),  # a VO mapped to imagesync's own project
    ("per-project", "gamma.vo", None, False),  # unmapped: nowhere better
    ("per-project", "broken.vo", None, False),
    ("per-project", None, None, False),
    ("shared", "alpha.vo", None, False),
    ("shared", "alpha.vo", "p-alpha", True),  # left in its VO's project by an earlier per-project run
    ("shared", "home.vo", OWN, False),
])
def test_misplaced(ownership: str, vo: str | None, project: str | None, expected: bool) -> None:
    routing = owners(ownership)
    route = routing.route(project)
    image: dict[str, Any] = {"id": "i", **({"ad_vo": vo} if vo else {})}
    assert routing.misplaced(image, route) is expected


def test_shared_ownership_looks_for_earlier_copies_in_each_usable_vo_project_it_can_log_in_to() -> None:
    spec = FakeSpec(answers=[ks_exc.Unauthorized(http_status=401)])  # the first login, p-alpha's, is refused
    routing = Owners(replace(TargetSettings(name="cloud", driver="glance"), projects={}), spec=cast(AuthSpec, spec),
                     own=OWN_ROUTE, own_id=lambda: OWN, glance=lambda session: session, mapping=lambda: MAPPING)
    assert [r.project for r in routing.strays()] == ["p-beta"]
    assert sorted(spec.sessions) == ["p-alpha", "p-beta"]
    assert owners("per-project").strays() == []  # listed anyway
    assert owners("shared").strays() == []  # no mapping: no VO project to look in


def held(tid: str, *, misplaced: bool = False) -> Held:
    return Held(target_id=tid, list_name="L", identifier="a", version="1", sha512="1" * 128,
                digest=properties.digest(desired("alpha.vo")), misplaced=misplaced)


def test_a_misplaced_copy_is_replaced_in_its_project_and_retired_by_the_normal_rules() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    state = {"cloud": [Known(record_id=1, list_name="L", identifier="a", version="1", sha512="1" * 128,
                             state="active", target_id="g1")]}
    wanted = [ListDesire(name="L", status="ok", images=(desired("alpha.vo"),))]
    plans = {flag: diff(wanted, state, {"cloud": [held("g1", misplaced=flag)]}, now=now,
                        targets=[TargetPolicy(name="cloud")]).actions for flag in (False, True)}
    assert [(a.kind, a.target_id) for a in plans[False]] == [("keep", "g1")]
    [update] = plans[True]
    assert (update.kind, update.supersedes) == ("update", ("g1",))
    assert update.reason == "version 1 is held outside the project it belongs in: copied there"


@pytest.mark.parametrize(("ownership", "project", "expected"), [
    ("per-project", "p-alpha", ("alpha.vo", "also.vo")),
    ("per-project", None, ("home.vo",)),
    ("per-project", "p-none", ()),
    ("shared", None, ()),
])
def test_the_vos_whose_project_holds_a_foreign_image(ownership: str, project: str | None,
                                                     expected: tuple[str, ...]) -> None:
    routing = owners(ownership)
    assert routing.vos_of(routing.route(project)) == expected
