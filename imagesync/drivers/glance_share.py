"""Sharing Glance images with the projects their VOs map to (``visibility: shared``).

Each image is shared with the project its VO maps to and the share is accepted right away with a token scoped to
that project, so the VO's members can boot it without any manual step. The VO -> project mapping is resolved once,
among the projects the imagesync user holds a role in. The driver hands in what this needs (its session, auth spec,
client, a glance-client factory and its error mapping) rather than itself, so this stays one small stage.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from imagesync import mapping, properties
from imagesync.config import TargetSettings
from imagesync.drivers.base import TargetError
from imagesync.drivers.openstack_auth import AuthSpec
from imagesync.model import DesiredImage


class Sharing:
    """VO -> project resolution and image sharing for one Glance target; nothing is contacted until needed."""

    def __init__(self, settings: TargetSettings, *, session: Any, spec: AuthSpec, client: Any,
                 glance: Callable[[Any], Any], calls: Callable[[str], AbstractContextManager[None]]) -> None:
        self._settings = settings
        self._session = session
        self._spec = spec
        self._client = client
        self._glance = glance
        self._calls = calls
        self._members: dict[str, str] | None = None

    def members_for(self, desired: DesiredImage) -> list[str]:
        """Project ids ``desired`` is to be shared with (none unless visibility is shared). Raises TargetError."""
        if self._settings.visibility != "shared":
            return []
        vo = properties.vo_of(desired)
        projects = self._mapping()
        if vo is None or vo not in projects:
            raise TargetError(f"VO {vo or '(none)'} of {desired.image.identifier} has no project in "
                              f"{self._settings.projects_file}", subject=f"target {self._settings.name}",
                              hint="add it to the mapping file, or use visibility private/community")
        return [projects[vo]]

    def mapped_projects(self) -> dict[str, str]:
        """VO -> project id for shared visibility (empty otherwise). Raises TargetError."""
        return self._mapping() if self._settings.visibility == "shared" else {}

    def share(self, image_id: str, members: list[str]) -> None:
        """Share ``image_id`` with each project and accept it there. Raises TargetError."""
        for project_id in members:
            with self._calls(f"share {image_id} with project {project_id}"):
                self._client.image_members.create(image_id, project_id)
            self._accept(image_id, project_id)

    def share_missing(self, target_id: str, desired: DesiredImage) -> None:
        """Add and accept whichever of ``desired``'s shares ``target_id`` lacks. Raises TargetError."""
        members = self.members_for(desired)
        if not members:
            return  # Glance refuses to list members of images that are not shared
        with self._calls(f"list members of {target_id}"):
            present = {m["member_id"]: m["status"] for m in self._client.image_members.list(target_id)}
        missing = [p for p in members if present.get(p) != "accepted"]
        for project_id in missing:
            if project_id not in present:
                with self._calls(f"share {target_id} with project {project_id}"):
                    self._client.image_members.create(target_id, project_id)
            self._accept(target_id, project_id)

    def _accept(self, image_id: str, project_id: str) -> None:
        scoped = self._glance(self._spec.session(project_id=project_id))
        with self._calls(f"accept the share of {image_id} in project {project_id}"):
            scoped.image_members.update(image_id, project_id, "accepted")

    def _mapping(self) -> dict[str, str]:
        if self._members is None:
            if self._settings.projects_file is None:
                raise TargetError("visibility shared needs projects_file (VO -> project mapping)",
                                  subject=f"target {self._settings.name}")
            refs = mapping.load(self._settings.projects_file)
            with self._calls("resolve mapped projects"):
                self._members = {vo: self._project_id(ref) for vo, ref in refs.items()}
        return self._members

    def _project_id(self, ref: mapping.ProjectRef) -> str:
        # Resolved among the projects the imagesync user holds a role in (no admin needed): it needs one there
        # anyway to accept the shares.
        mine = self._session.get("/auth/projects", endpoint_filter={"service_type": "identity",
                                                                     "interface": self._spec.interface}).json()
        projects = mine.get("projects", [])
        by_id = [p for p in projects if p["id"] == ref.project]
        by_name = [p for p in projects if p["name"] == ref.project and _in_domain(p, ref.domain)]
        if by_id or len(by_name) == 1:
            return str((by_id or by_name)[0]["id"])
        if len(by_name) > 1:
            raise TargetError(f"project name {ref.project} is ambiguous: give its domain or its id in "
                              f"{self._settings.projects_file}", subject=f"target {self._settings.name}")
        raise TargetError(f"project {ref.project} of {self._settings.projects_file} is not among the projects the "
                          "imagesync user holds a role in", subject=f"target {self._settings.name}",
                          hint="grant it the member role there: it accepts the shares in that project")


def _in_domain(project: dict[str, Any], domain: str | None) -> bool:
    # /auth/projects gives domain ids only; the default domain's id is "default", its name "Default".
    return domain is None or str(project.get("domain_id", "")).lower() == domain.lower()
