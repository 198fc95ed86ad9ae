"""Glance fails during create, upload, metadata update and retirement (5xx, 409, 413, a stall past the timeout),
and Keystone stops accepting the user in the middle of a run.

A first run, once for the module, puts ``demo-a`` and ``demo-b`` version 1 into the dev cloud's Glance (through
GlanceProxy) and into the archive. Every scenario starts from a copy of that run's state and archive, changes list
``demo`` so that ``demo-a`` needs exactly one kind of Glance call, and makes that call fail. The run must exit 1, say
in one line that target ``cloud`` failed and why, leave Glance exactly as it was (``demo-a`` version 1 active:
nothing retired, nothing half-made left) and make the same change in the archive, the other target.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from keystoneauth1 import exceptions as ks_exc

from imagesync.demo.world import DemoImage
from imagesync.errors import EXIT_PARTIAL
from tests.devcloud.fixture import IDENTITY, Credentials, DevCloud
from tests.faults.outcome import assert_no_crash, assert_one_line, clean_sync, imagesync
from tests.faults.scene import ARCHIVE, FaultPki, Scene, holdings, image
from tests.support.glance_proxy import GlanceProxy

CLOUD = "cloud"
TIMEOUT = 2  # targets.cloud.timeout in the stall scenarios: long enough for a loaded machine, short for the suite
STALL = 3 * TIMEOUT


@dataclass(frozen=True)
class Phase:
    """Which Glance call ``demo-a`` needs when list ``demo`` names ``images``, and what the archive then holds."""

    method: str
    path: str
    action: str
    images: Callable[[], list[DemoImage]]
    archive: dict[str, str]


PHASES = {
    "create": Phase("POST", r"^/v2/images$", "update", lambda: [image("demo-a", "2"), image("demo-b")],
                    {"demo/demo-a-2": "active", "demo/demo-a-1": "retired", "demo/demo-b-1": "active"}),
    "upload": Phase("PUT", r"^/v2/images/[0-9a-f-]+/file$", "update", lambda: [image("demo-a", "2"), image("demo-b")],
                    {"demo/demo-a-2": "active", "demo/demo-a-1": "retired", "demo/demo-b-1": "active"}),
    "update": Phase("PATCH", r"^/v2/images/[0-9a-f-]+$", "update-metadata",
                    lambda: [image("demo-a", title="Demo A, retitled"), image("demo-b")],
                    {"demo/demo-a-1": "active", "demo/demo-b-1": "active"}),
    "retire": Phase("POST", r"^/v2/images/[0-9a-f-]+/actions/deactivate$", "retire", lambda: [image("demo-b")],
                    {"demo/demo-a-1": "retired", "demo/demo-b-1": "active"}),
}
# status None: the proxy says nothing for STALL seconds.
ERRORS: dict[str, tuple[int | None, str]] = {
    "http-503": (503, "HTTP 503"), "http-409": (409, "HTTP 409"), "http-413": (413, "HTTP 413"),
    "timeout": (None, "timed out"),
}


@dataclass
class Cloud:
    devcloud: DevCloud
    scene: Scene
    proxy: GlanceProxy
    tag: str
    baseline: Path  # the first run's directory: its state, cache and archive

    def target(self, user: Credentials, timeout: int | None) -> dict[str, object]:
        auth = self.devcloud.password_auth(user)
        return {CLOUD: {"driver": "glance", "visibility": "private", "tag": self.tag, "region": self.devcloud.region,
                        "endpoint": self.proxy.url, "auth": auth, **({"timeout": timeout} if timeout else {})}}

    def config(self, run: Path, *, user: Credentials | None = None, timeout: int | None = None) -> Path:
        return self.scene.config(run, targets=self.target(user or self.devcloud.user, timeout), lists=("demo",))

    @cached_property
    def glance(self) -> Any:
        return self.devcloud.glance()

    def view(self) -> dict[str, tuple[str, str, Any]]:
        """What Glance holds with our tag: id -> (status, name, version). Retirement here deactivates and never
        hides, so one plain listing sees every image."""
        return {item["id"]: (item["status"], item["name"], item.get("imagesync_version"))
                for item in self.glance.images.list(filters={"tag": [self.tag]})}


@pytest.fixture(scope="module")
def cloud(devcloud: DevCloud, fault_pki: FaultPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("glance-faults")
    scene = Scene(root / "world", fault_pki)
    built = Cloud(devcloud, scene, GlanceProxy(devcloud.glance_url), f"imagesync-faults-{uuid4().hex[:8]}",
                  root / "baseline")
    try:
        scene.publish("demo", [image("demo-a"), image("demo-b")])
        clean_sync(built.config(built.baseline))
        yield built
    finally:
        built.proxy.close()
        scene.stop()
        for image_id in built.view():
            built.glance.images.delete(image_id)


@pytest.fixture
def run(cloud: Cloud, tmp_path: Path) -> Iterator[Path]:
    """A copy of the first run's state, cache and archive; no fault outlives the test."""
    copy = tmp_path / "run"
    shutil.copytree(cloud.baseline, copy)
    try:
        yield copy
    finally:
        cloud.proxy.clear()


def _assert_contained(cloud: Cloud, run: Path, phase: Phase, before: dict[str, tuple[str, str, Any]], cfg: Path,
                      cause: str) -> None:
    outcome = imagesync(cfg)
    assert outcome.code == EXIT_PARTIAL, outcome.explain()
    assert_no_crash(outcome)
    assert outcome.failed_lists() == {}
    failed = outcome.failed_actions()
    assert list(failed) == [(CLOUD, "demo-a", phase.action)], outcome.explain()
    error = assert_one_line(failed[(CLOUD, "demo-a", phase.action)], f"target {CLOUD}", cause)
    # The image is named by its identifier (create, upload) or by its id in Glance (update, retire).
    glance_id = next(i for i, (_status, name, _version) in before.items() if name.startswith("Demo-A"))
    assert "demo-a" in error or glance_id in error, error
    assert len(outcome.log_lines("list=demo", "image=demo-a", f"target={CLOUD}", "result=failed")) == 1, \
        outcome.stderr
    assert cloud.view() == before  # Glance as it was: demo-a version 1 active, nothing new, nothing retired
    assert holdings(run / ARCHIVE) == phase.archive  # the other target did its work


@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("phase", list(PHASES))
def test_glance_fault_fails_that_target_alone(cloud: Cloud, run: Path, phase: str, error: str) -> None:
    step, (status, cause) = PHASES[phase], ERRORS[error]
    cfg = cloud.config(run, timeout=TIMEOUT if status is None else None)
    cloud.scene.publish("demo", step.images())
    before = cloud.view()
    if status is None:
        cloud.proxy.stall_next(step.method, step.path, STALL, times=10)
    else:
        cloud.proxy.fail_next(step.method, step.path, status, times=10)
    _assert_contained(cloud, run, step, before, cfg, cause)


@pytest.fixture
def doomed_user(cloud: Cloud) -> Iterator[Credentials]:
    """A member of the imagesync project of its own, so that making Keystone refuse it harms no other test."""
    devcloud = cloud.devcloud
    admin = devcloud.session(devcloud.require_admin())
    who = Credentials(f"doomed-{uuid4().hex[:8]}", uuid4().hex, devcloud.user.project_name)
    user = admin.post("/users", json={"user": {"name": who.username, "password": who.password,
                                               "domain_id": "default"}}, endpoint_filter=IDENTITY).json()["user"]
    role = admin.get("/roles?name=member", endpoint_filter=IDENTITY).json()["roles"][0]
    project_id = devcloud.session().get_project_id()
    admin.put(f"/projects/{project_id}/users/{user['id']}/roles/{role['id']}", endpoint_filter=IDENTITY)
    try:
        yield who
    finally:
        admin.delete(f"/users/{user['id']}", endpoint_filter=IDENTITY)


def test_keystone_refusing_the_user_mid_run_fails_that_target_alone(cloud: Cloud, run: Path,
                                                                    doomed_user: Credentials) -> None:
    devcloud = cloud.devcloud
    admin = devcloud.session(devcloud.require_admin())

    def disable() -> None:
        # Between the inventory and the upload: from now on Keystone refuses this user a token.
        user_id = admin.get(f"/users?name={doomed_user.username}", endpoint_filter=IDENTITY).json()["users"][0]["id"]
        admin.patch(f"/users/{user_id}", json={"user": {"enabled": False}}, endpoint_filter=IDENTITY)

    phase = PHASES["create"]
    cfg = cloud.config(run, user=doomed_user)
    cloud.scene.publish("demo", phase.images())
    before = cloud.view()
    # Glance's token cache would still accept the old token for minutes: it answers 401 as it will once it notices;
    # the client asks Keystone for a new token, and Keystone's refusal is real.
    cloud.proxy.fail_next(phase.method, phase.path, 401, before=disable)
    _assert_contained(cloud, run, phase, before, cfg, "Keystone refused the credentials")
    with pytest.raises(ks_exc.Unauthorized):
        devcloud.session(doomed_user).get_token()
