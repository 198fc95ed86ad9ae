"""A dev cloud (real Keystone + Glance from tests/devcloud, on 127.0.0.1) for the benchmarks that need one.

Unlike bench/glance.py this does not take an OS_* cloud: the comparisons need the dev cloud's admin to grant the
sync user a role in a VO project, and they delete every image they made by stopping the cloud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glanceclient import client  # type: ignore[import-untyped,unused-ignore]
from keystoneauth1 import session
from keystoneauth1.identity import v3

REPO = Path(__file__).resolve().parent.parent
DEVCLOUD = REPO / "tests" / "devcloud" / "devcloud.py"
IDENTITY = {"service_type": "identity", "interface": "public"}


def devcloud_home() -> Path:
    return Path(os.environ.get("IMAGESYNC_DEVCLOUD_HOME") or REPO / ".devcloud")


@dataclass(frozen=True)
class Account:
    """A Keystone user scoped to one project (password auth)."""

    username: str
    password: str = ""
    project_name: str = ""
    project_id: str = ""
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> Account:
        return cls(doc["username"], doc["password"], doc["project_name"], doc["project_id"],
                   doc["user_domain_name"], doc["project_domain_name"])


@dataclass(frozen=True)
class Cloud:
    auth_url: str
    region: str
    user: Account  # the sync user (both tools use it), member of its own project
    admin: Account
    vo_projects: dict[str, str]  # VO project name -> id
    glance_pid: int = 0  # the gunicorn master; it leads the process group of Glance's workers (0: not known)

    @classmethod
    def from_env(cls) -> Cloud:
        """The cloud and user of this process's OS_* variables (no admin, no VO projects): for child processes."""
        env = os.environ
        user = Account(env["OS_USERNAME"], env["OS_PASSWORD"], env["OS_PROJECT_NAME"], "",
                       env.get("OS_USER_DOMAIN_NAME", "Default"), env.get("OS_PROJECT_DOMAIN_NAME", "Default"))
        return cls(env["OS_AUTH_URL"], env.get("OS_REGION_NAME", "RegionOne"), user, Account(""), {})

    def auth(self, who: Account | None = None) -> dict[str, str]:
        """imagesync's ``auth:`` for ``who`` (default: the sync user)."""
        a = who or self.user
        return {"auth_type": "password", "auth_url": self.auth_url, "username": a.username, "password": a.password,
                "project_name": a.project_name, "user_domain_name": a.user_domain_name,
                "project_domain_name": a.project_domain_name}

    def env(self, who: Account | None = None) -> dict[str, str]:
        """The OS_* variables for ``who`` (default: the sync user)."""
        a = who or self.user
        return {"OS_AUTH_URL": self.auth_url, "OS_USERNAME": a.username, "OS_PASSWORD": a.password,
                "OS_PROJECT_NAME": a.project_name, "OS_USER_DOMAIN_NAME": a.user_domain_name,
                "OS_PROJECT_DOMAIN_NAME": a.project_domain_name, "OS_REGION_NAME": self.region,
                "OS_IDENTITY_API_VERSION": "3", "OS_INTERFACE": "public"}

    def session(self, who: Account | None = None) -> session.Session:
        a = who or self.user
        auth = v3.Password(auth_url=self.auth_url, username=a.username, password=a.password,
                           project_name=a.project_name, user_domain_name=a.user_domain_name,
                           project_domain_name=a.project_domain_name)
        return session.Session(auth=auth, timeout=120)

    def glance(self, who: Account | None = None) -> Any:
        return client.Client("2", session=self.session(who), region_name=self.region, interface="public")

    def glance_cpu(self) -> float:
        """CPU seconds (user + system) used so far by Glance's processes, workers included; 0 if not known."""
        return group_cpu(self.glance_pid) if self.glance_pid else 0.0

    def grant_member(self, project_id: str) -> None:
        """Give the sync user the member role in ``project_id``, as a site does for its sync account (both tools
        accept an image's share with a token scoped to the VO's project)."""
        admin = self.session(self.admin)
        user_id = self.session().get_user_id()
        roles = admin.get("/roles?name=member", endpoint_filter=IDENTITY).json()["roles"]
        admin.put(f"/projects/{project_id}/users/{user_id}/roles/{roles[0]['id']}", endpoint_filter=IDENTITY)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes in process group ``pgid``, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # After the ")" closing the command name: state, ppid, pgrp, ..., utime and stime are the 12th and 13th.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any OS_* of the caller's, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OS_")}, **extra}


@contextmanager
def dev_cloud(root: Path, *, glance_workers: int | None = None) -> Iterator[Cloud]:
    """Install (once) and start a dev cloud under ``root``, with ``glance_workers`` Glance processes if given (else
    as $IMAGESYNC_DEVCLOUD_GLANCE_WORKERS says, default 1); stop it when the block ends."""
    run_dir = root / "devcloud"
    devcloud = [sys.executable, str(DEVCLOUD)]
    subprocess.run([*devcloud, "install"], check=True)
    env = {**os.environ, **({"IMAGESYNC_DEVCLOUD_GLANCE_WORKERS": str(glance_workers)} if glance_workers else {})}
    subprocess.run([*devcloud, "start", "--dir", str(run_dir)], check=True, stdout=subprocess.DEVNULL, env=env)
    try:
        doc = json.loads((run_dir / "cloud.json").read_text())
        yield Cloud(auth_url=doc["auth_url"], region=doc["region"], user=Account.from_json(doc["imagesync"]),
                    admin=Account.from_json(doc["admin"]),
                    vo_projects={name: vo["project_id"] for name, vo in doc["vo_projects"].items()},
                    glance_pid=int(doc["glance"]["pid"] or 0))
    finally:
        subprocess.run([*devcloud, "stop", "--dir", str(run_dir)], check=True)
