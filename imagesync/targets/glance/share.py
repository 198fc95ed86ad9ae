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

from imagesync.config import mapping
from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage
from imagesync.targets import properties
from imagesync.targets.base import TargetError
from imagesync.targets.glance.auth import AuthSpec
from imagesync.targets.glance.projects import ProjectFinder


class Sharing:
    """VO -> project resolution and image sharing for one Glance target; nothing is contacted until needed."""

    def __init__(self, settings: TargetSettings, *, session: Any, spec: AuthSpec, client: Callable[[], Any],
                 scoped: Callable[[str], Any], calls: Callable[[str], AbstractContextManager[None]]) -> None:
        """``client`` gives the driver's glanceclient (made when first asked for), ``scoped`` one scoped to a
        project, made once per run: a new one per image cost a Keystone login and a schema fetch each (0.3-0.4 s an
        image on the dev cloud)."""
        self._settings = settings
        self._session = session
        self._spec = spec
        self._client = client
        self._scoped = scoped
        self._calls = calls
        self._members: dict[str, str | TargetError] | None = None
        self._loaded: dict[str, mapping.ProjectRef] | None = None

    def members_for(self, desired: DesiredImage) -> list[str]:
        """Project ids ``desired`` is to be shared with (none unless visibility is shared). Raises TargetError
        when its VO is unmapped or its project unusable (the message says why)."""
        if not self._shares():
            return []
        vo = properties.vo_of(desired)
        found = self._mapping().get(vo) if vo is not None else None
        if found is None:
            raise TargetError(f"VO {vo or '(none)'} of {desired.image.identifier} has no project in "
                              f"{self._settings.projects_file}", subject=f"target {self._settings.name}",
                              hint="add it to the mapping file, or use visibility private/community")
        if isinstance(found, TargetError):
            raise TargetError(found.message, subject=found.subject, hint=found.hint)
        return [found]

    def mapped_projects(self) -> dict[str, str | TargetError]:
        """VO -> project id, or why that VO's project cannot be used, for shared visibility or ownership
        per-project (empty otherwise). Raises TargetError when the mapping cannot be read or Keystone cannot be
        asked at all."""
        return dict(self._mapping()) if self._mapped() else {}

    def resolved(self) -> dict[str, str | TargetError]:
        """VO -> project id, or why not, whatever the visibility (ownership per-project routes by it). Raises
        TargetError as :meth:`mapped_projects`."""
        return self._mapping()

    def project_of(self, vo: str | None) -> str | None:
        """The project as the mapping file names it (name or id) for ``vo``; None when unmapped, or neither
        shared nor owned per project."""
        if not self._mapped() or vo is None:
            return None
        ref = self._refs().get(vo)
        return ref.project if ref is not None else None

    def share(self, image_id: str, members: list[str]) -> None:
        """Share ``image_id`` with each project and accept it there. Raises TargetError."""
        for project_id in members:
            with self._calls(f"share {image_id} with project {project_id}"):
                self._client().image_members.create(image_id, project_id)
            self._accept(image_id, project_id)

    def share_missing(self, target_id: str, desired: DesiredImage) -> None:
        """Add and accept whichever of ``desired``'s shares ``target_id`` lacks. Raises TargetError."""
        members = self.members_for(desired)
        if not members:
            return  # Glance refuses to list members of images that are not shared
        with self._calls(f"list members of {target_id}"):
            present = {m["member_id"]: m["status"] for m in self._client().image_members.list(target_id)}
        missing = [p for p in members if present.get(p) != "accepted"]
        for project_id in missing:
            if project_id not in present:
                with self._calls(f"share {target_id} with project {project_id}"):
                    self._client().image_members.create(target_id, project_id)
            self._accept(target_id, project_id)

    def _accept(self, image_id: str, project_id: str) -> None:
        with self._calls(f"accept the share of {image_id} in project {project_id}"):
            self._scoped(project_id).image_members.update(image_id, project_id, "accepted")

    def _shares(self) -> bool:
        # Per-project images are owned by their VO's project: nothing to share with it.
        return self._settings.visibility == "shared" and self._settings.ownership == "shared"

    def _mapped(self) -> bool:
        return self._settings.visibility == "shared" or self._settings.ownership == "per-project"

    def _refs(self) -> dict[str, mapping.ProjectRef]:
        if self._settings.projects_file is None:
            raise TargetError("visibility shared and ownership per-project need projects_file (VO -> project "
                              "mapping)",
                              subject=f"target {self._settings.name}")
        if self._loaded is None:
            self._loaded = mapping.of_target(self._settings.projects, self._settings.projects_file)
        return self._loaded

    def _mapping(self) -> dict[str, str | TargetError]:
        # Resolved once, each VO on its own: one VO's missing project fails that VO's images only.
        if self._members is None:
            finder = ProjectFinder(session=self._session, spec=self._spec, target=self._settings.name,
                                   projects_file=self._settings.projects_file)
            members: dict[str, str | TargetError] = {}
            with self._calls("resolve mapped projects"):
                for vo, ref in self._refs().items():
                    try:
                        members[vo] = finder.resolve(vo, ref)
                    except TargetError as exc:
                        members[vo] = exc
            self._members = members
        return self._members
