"""The dev cloud's projects, users and catalog, created through Keystone's v3 REST API (standard library only).

Passwords here are for a throwaway loopback cloud and nothing else.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.devcloud.procs import DevcloudError

DOMAIN = "Default"
REGION = "RegionOne"
ADMIN_PASSWORD = "devcloud-admin-secret"
GLANCE_PASSWORD = "devcloud-glance-secret"
SYNC_USER = ("imagesync", "imagesync", "devcloud-imagesync-secret")  # project, user, password
VO_USERS = (
    ("vo-alpha", "alpha-user", "devcloud-alpha-secret"),
    ("vo-beta", "beta-user", "devcloud-beta-secret"),
)


@dataclass(frozen=True)
class Account:
    """A user with a member role on one project, as the cloud.json file describes it."""

    project: str
    project_id: str
    username: str
    user_id: str
    password: str

    def as_json(self) -> dict[str, str]:
        return {
            "project_name": self.project,
            "project_id": self.project_id,
            "username": self.username,
            "user_id": self.user_id,
            "password": self.password,
            "user_domain_name": DOMAIN,
            "project_domain_name": DOMAIN,
        }


class _Client:
    """Just enough of Keystone v3 to populate a fresh cloud as the bootstrap admin."""

    def __init__(self, auth_url: str) -> None:
        self._base = auth_url.rstrip("/")
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": "admin", "domain": {"name": DOMAIN}, "password": ADMIN_PASSWORD}},
                },
                "scope": {"project": {"name": "admin", "domain": {"name": DOMAIN}}},
            }
        }
        self._token = ""
        self._token = self._call("POST", "/auth/tokens", body, want_token=True)["__token__"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, want_token: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self._base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self._token:
            req.add_header("X-Auth-Token", self._token)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                doc: dict[str, Any] = json.loads(raw) if raw else {}
                if want_token:
                    doc["__token__"] = resp.headers["X-Subject-Token"]
                return doc
        except OSError as exc:
            raise DevcloudError(f"keystone {method} {path} failed: {exc}") from exc

    def find(self, kind: str, name: str) -> str:
        found = self._call("GET", f"/{kind}s?name={name}")[f"{kind}s"]
        if len(found) != 1:
            raise DevcloudError(f"expected one {kind} named {name!r} in keystone, found {len(found)}")
        return str(found[0]["id"])

    def create(self, kind: str, fields: dict[str, Any]) -> str:
        return str(self._call("POST", f"/{kind}s", {kind: fields})[kind]["id"])

    def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        self._call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")


def _account(client: _Client, domain_id: str, project: str, username: str, password: str, roles: list[str]) -> Account:
    project_id = client.create("project", {"name": project, "domain_id": domain_id})
    user_id = client.create(
        "user", {"name": username, "domain_id": domain_id, "password": password, "default_project_id": project_id}
    )
    for role in roles:
        client.grant(project_id, user_id, client.find("role", role))
    return Account(project, project_id, username, user_id, password)


def populate(auth_url: str, glance_url: str) -> dict[str, Any]:
    """Create the service project, glance user, image service and the test projects; returns cloud.json's accounts.

    Raises DevcloudError when Keystone refuses any step.
    """
    client = _Client(auth_url)
    domain_id = client.find("domain", DOMAIN)
    glance = _account(client, domain_id, "service", "glance", GLANCE_PASSWORD, ["service", "admin"])
    service_id = client.create("service", {"type": "image", "name": "glance", "enabled": True})
    for interface in ("public", "internal", "admin"):
        client.create(
            "endpoint", {"service_id": service_id, "interface": interface, "url": glance_url, "region_id": REGION}
        )
    sync = _account(client, domain_id, *SYNC_USER, roles=["member"])
    vos = [_account(client, domain_id, *vo, roles=["member"]) for vo in VO_USERS]
    admin = Account("admin", client.find("project", "admin"), "admin", client.find("user", "admin"), ADMIN_PASSWORD)
    return {
        "admin": admin.as_json(),
        "service": glance.as_json(),
        "imagesync": sync.as_json(),
        "vo_projects": {vo.project: vo.as_json() for vo in vos},
    }
