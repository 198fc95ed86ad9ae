"""pytest fixture `devcloud`: a real Keystone + Glance for the session.

With OS_AUTH_URL set, the cloud those OS_* variables describe is used as it is; VO projects then come
from IMAGESYNC_TEST_VO_PROJECTS="project:user:password,..." and admin rights from
IMAGESYNC_TEST_ADMIN="user:password:project" (tests that need them are skipped without). Otherwise
tests/devcloud/devcloud.py installs (once) and starts a cloud on 127.0.0.1 in a temporary directory and stops it
when the session ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

DEVCLOUD = Path(__file__).resolve().parent / "devcloud.py"


@dataclass(frozen=True)
class Credentials:
    """A Keystone user scoped to one project (password auth)."""

    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"

    def auth(self, auth_url: str) -> v3.Password:
        return v3.Password(
            auth_url=auth_url,
            username=self.username,
            password=self.password,
            project_name=self.project_name,
            user_domain_name=self.user_domain_name,
            project_domain_name=self.project_domain_name,
        )


@dataclass(frozen=True)
class DevCloud:
    """What a test needs to reach the cloud; run_dir is None for an external cloud (OS_AUTH_URL)."""

    auth_url: str
    region: str
    glance_url: str
    user: Credentials  # the imagesync user, member of its own project
    admin: Credentials | None
    vo_projects: Mapping[str, str]  # VO project name -> project id
    vo_users: Mapping[str, Credentials]  # VO project name -> a member user of it
    run_dir: Path | None = None

    def session(self, user: Credentials | None = None) -> ks_session.Session:
        """A keystoneauth1 session for user (default: the imagesync user)."""
        return ks_session.Session(auth=(user or self.user).auth(self.auth_url), timeout=60)

    def glance(self, user: Credentials | None = None) -> Any:
        """A glanceclient v2 client for user (default: the imagesync user), on the public endpoint of our region."""
        from glanceclient import client  # type: ignore[import-untyped,unused-ignore]

        return client.Client("2", session=self.session(user), region_name=self.region, interface="public")

    def tagged(self, tag: str, *, hidden: bool = False) -> list[dict[str, Any]]:
        """The images of the imagesync user's project carrying ``tag``; with ``hidden``, the hidden ones too."""
        glance = self.glance()
        found = {i["id"]: dict(i) for shown in ((False, True) if hidden else (False,))
                 for i in glance.images.list(filters={"tag": [tag], **({"os_hidden": True} if shown else {})})}
        return list(found.values())

    @contextmanager
    def test_tag(self) -> Iterator[str]:
        """A tag of one test alone; whatever still carries it at the end is deleted (and fails no test by
        itself)."""
        unique = f"imagesync-{uuid.uuid4().hex[:8]}"
        try:
            yield unique
        finally:
            glance = self.glance()
            for image in self.tagged(unique, hidden=True):
                glance.images.delete(image["id"])

    def password_auth(self, user: Credentials | None = None, *, password_file: Path | None = None) -> dict[str, str]:
        """A target's ``auth:`` for user (default: the imagesync user), password inline or from ``password_file``."""
        who = user or self.user
        secret = {"password_file": str(password_file)} if password_file else {"password": who.password}
        return {"auth_type": "password", "auth_url": self.auth_url, "username": who.username, **secret,
                "project_name": who.project_name, "user_domain_name": who.user_domain_name,
                "project_domain_name": who.project_domain_name}

    def openstack_env(self, user: Credentials | None = None) -> dict[str, str]:
        """The OS_* variables for user, e.g. for a subprocess that reads its credentials from the environment."""
        who = user or self.user
        return {
            "OS_AUTH_URL": self.auth_url,
            "OS_USERNAME": who.username,
            "OS_PASSWORD": who.password,
            "OS_PROJECT_NAME": who.project_name,
            "OS_USER_DOMAIN_NAME": who.user_domain_name,
            "OS_PROJECT_DOMAIN_NAME": who.project_domain_name,
            "OS_REGION_NAME": self.region,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_INTERFACE": "public",
        }

    def require_admin(self) -> Credentials:
        """The admin credentials; skips the test when the cloud in use has none."""
        if self.admin is None:
            pytest.skip("no admin credentials for this cloud (set IMAGESYNC_TEST_ADMIN)")
        return self.admin

    def require_vos(self, count: int = 2) -> list[str]:
        """The names of at least count VO projects, sorted; skips the test when the cloud has fewer."""
        if len(self.vo_users) < count:
            pytest.skip(f"needs {count} VO projects (set IMAGESYNC_TEST_VO_PROJECTS)")
        return sorted(self.vo_users)


def _credentials(doc: Mapping[str, str]) -> Credentials:
    return Credentials(
        doc["username"], doc["password"], doc["project_name"], doc["user_domain_name"], doc["project_domain_name"]
    )


def from_cloud_json(path: Path) -> DevCloud:
    """The DevCloud that devcloud.py described in path (its cloud.json). Raises OSError, KeyError or ValueError."""
    doc: dict[str, Any] = json.loads(path.read_text())
    vos = doc["vo_projects"]
    return DevCloud(
        auth_url=doc["auth_url"],
        region=doc["region"],
        glance_url=doc["image_url"],
        user=_credentials(doc["imagesync"]),
        admin=_credentials(doc["admin"]),
        vo_projects={name: vo["project_id"] for name, vo in vos.items()},
        vo_users={name: _credentials(vo) for name, vo in vos.items()},
        run_dir=Path(doc["dir"]),
    )


def from_environment(env: Mapping[str, str]) -> DevCloud:
    """The DevCloud an OS_* environment describes; asks its Keystone for the image endpoint and the VO project ids.

    Raises KeyError when a required OS_* variable is missing, ValueError for a malformed IMAGESYNC_TEST_* entry,
    and keystoneauth1 errors when the cloud refuses the credentials.
    """
    user_domain = env.get("OS_USER_DOMAIN_NAME", "Default")
    project_domain = env.get("OS_PROJECT_DOMAIN_NAME", "Default")

    def creds(username: str, password: str, project: str) -> Credentials:
        return Credentials(username, password, project, user_domain, project_domain)

    user = creds(env["OS_USERNAME"], env["OS_PASSWORD"], env["OS_PROJECT_NAME"])
    admin = creds(*_fields(env["IMAGESYNC_TEST_ADMIN"], 3)) if env.get("IMAGESYNC_TEST_ADMIN") else None
    vo_users: dict[str, Credentials] = {}
    for entry in filter(None, env.get("IMAGESYNC_TEST_VO_PROJECTS", "").split(",")):
        project, username, password = _fields(entry, 3)
        vo_users[project] = creds(username, password, project)
    auth_url, region = env["OS_AUTH_URL"], env.get("OS_REGION_NAME", "RegionOne")
    session = ks_session.Session(auth=user.auth(auth_url), timeout=60)
    glance_url = session.get_endpoint(
        service_type="image", interface=env.get("OS_INTERFACE", "public"), region_name=region
    )
    vo_projects = {
        name: str(ks_session.Session(auth=who.auth(auth_url), timeout=60).get_project_id())
        for name, who in vo_users.items()
    }
    return DevCloud(auth_url, region, str(glance_url), user, admin, vo_projects, vo_users)


def _fields(entry: str, count: int) -> list[str]:
    # Passwords may contain colons: only the first count-1 colons separate fields.
    parts = entry.strip().split(":", count - 1)
    if len(parts) != count or not all(parts):
        raise ValueError(f"expected {count} colon-separated fields in an IMAGESYNC_TEST_* entry")
    return parts


def run_devcloud(*args: str) -> str:
    """Run devcloud.py with this interpreter; returns its stdout. Fails the test session with its stderr on error."""
    result = subprocess.run(
        [sys.executable, str(DEVCLOUD), *args], capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        pytest.fail(f"devcloud.py {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result.stdout


@pytest.fixture(scope="session")
def devcloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCloud]:
    """The cloud of OS_AUTH_URL if set, else a dev cloud of our own for the whole session."""
    if os.environ.get("OS_AUTH_URL"):
        yield from_environment(os.environ)
        return
    run_dir = tmp_path_factory.mktemp("devcloud")
    run_devcloud("install")
    run_devcloud("start", "--dir", str(run_dir))
    try:
        yield from_cloud_json(run_dir / "cloud.json")
    finally:
        run_devcloud("stop", "--dir", str(run_dir))


IDENTITY = {"service_type": "identity", "interface": "public"}


@pytest.fixture(scope="session")
def vo_access(devcloud: DevCloud) -> DevCloud:
    """The imagesync user holds the member role in every VO project, as a site grants it to its sync account."""
    admin = devcloud.session(devcloud.require_admin())
    devcloud.require_vos(2)
    user_id = devcloud.session().get_user_id()
    roles = admin.get("/roles?name=member", endpoint_filter=IDENTITY).json()["roles"]
    for project_id in devcloud.vo_projects.values():
        admin.put(f"/projects/{project_id}/users/{user_id}/roles/{roles[0]['id']}", endpoint_filter=IDENTITY)
    return devcloud
