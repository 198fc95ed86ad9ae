"""Which Keystone project a VO's mapping entry names, and when it names none the imagesync user can use, why.

Three causes need three remedies: a typo in the mapping file (the project does not exist), a missing role
assignment (it exists, the imagesync user holds no role there), or a user that may not tell the two apart.
Keystone answers a plain member the same for the first two: the project is absent from ``/auth/projects``
(the projects it holds a role in) and a token scoped to it is refused with the same 401. Only a lookup
(``GET /v3/projects``) tells them apart, and Keystone's default policy allows that to admins and readers of
the domain or system, not to members. So the lookup is tried; when it is refused, the message says that the
two cannot be told apart instead of guessing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from keystoneauth1 import exceptions as ks_exc

from imagesync.config.mapping import ProjectRef
from imagesync.errors import ConfigError
from imagesync.targets.base import TargetError
from imagesync.targets.glance.auth import AuthSpec

_KEYSTONE_ID = re.compile(r"[0-9a-f]{32}")


class ProjectFinder:
    """Resolves mapping entries to project ids for one target; asks Keystone for the user's projects once."""

    def __init__(self, *, session: Any, spec: AuthSpec, target: str, projects_file: Path | None) -> None:
        self._session = session
        self._spec = spec
        self._target = target
        self._file = projects_file
        self._mine: list[dict[str, Any]] | None = None

    def resolve(self, vo: str, ref: ProjectRef) -> str:
        """The id of the project ``ref`` names for ``vo``, among those the imagesync user holds a role in.

        Raises TargetError saying which of: ambiguous name, project does not exist, exists but the user holds
        no role in it, or not visible to the user (Keystone refuses it lookups). Connection and other client
        errors are left to the caller's error mapping.
        """
        projects = self._my_projects()
        by_id = [p for p in projects if p["id"] == ref.project]
        by_name = [p for p in projects if p["name"] == ref.project and _in_domain(p, ref.domain)]
        if by_id or len(by_name) == 1:
            return str((by_id or by_name)[0]["id"])
        if len(by_name) > 1:
            raise self._error(vo, ref, "names more than one project", "give its domain or its id")
        scoped = self._scoped_id(ref)
        if scoped is not None:
            return scoped
        raise self._why_not(vo, ref)

    def _my_projects(self) -> list[dict[str, Any]]:
        if self._mine is None:
            answer = self._session.get("/auth/projects", endpoint_filter=self._identity()).json()
            self._mine = list(answer.get("projects", []))
        return self._mine

    def _scoped_id(self, ref: ProjectRef) -> str | None:
        # A role the listing does not show the way the mapping names it (a domain given by name, not id) still
        # gets a token: then the project is usable. Keystone refuses it alike for "no role" and "no project".
        try:
            if _KEYSTONE_ID.fullmatch(ref.project):
                session = self._spec.session(project_id=ref.project)
            else:
                session = self._spec.session(project_name=ref.project, project_domain=ref.domain)
            return str(session.get_project_id())
        except (ks_exc.Unauthorized, ks_exc.Forbidden, ks_exc.NotFound, ConfigError):
            return None

    def _why_not(self, vo: str, ref: ProjectRef) -> TargetError:
        if _KEYSTONE_ID.fullmatch(ref.project):
            answer = self._session.get(f"/projects/{ref.project}", endpoint_filter=self._identity(), raise_exc=False)
            exists = answer.status_code == 200 if answer.status_code in (200, 404) else None
        else:
            answer = self._session.get("/projects", params={"name": ref.project}, endpoint_filter=self._identity(),
                                       raise_exc=False)
            found = answer.json().get("projects", []) if answer.status_code == 200 else None
            # A domain given by name cannot be matched against the ids a listing gives: the name decides.
            exists = None if found is None else bool(found)
        user = self._spec.options.get("username") or "the imagesync user"
        if exists is True:
            return self._error(vo, ref, "exists, but the imagesync user holds no role in it",
                               f"grant it one, e.g. openstack role add --user {user} --project {ref.project} "
                               "member: shares are accepted in that project")
        if exists is False:
            return self._error(vo, ref, "does not exist", f"correct the entry of {vo} in {self._file}")
        return self._error(vo, ref, "is not among the projects the imagesync user holds a role in, and Keystone "
                           f"does not let it look projects up (HTTP {answer.status_code}), so whether the project "
                           "exists cannot be told",
                           f"check the name in {self._file}; if it is right, grant {user} the member role there")

    def _error(self, vo: str, ref: ProjectRef, problem: str, hint: str) -> TargetError:
        domain = f" (domain {ref.domain})" if ref.domain else ""
        return TargetError(f"VO {vo}: project {ref.project}{domain} {problem}", subject=f"target {self._target}",
                           hint=hint)

    def _identity(self) -> dict[str, str]:
        return {"service_type": "identity", "interface": self._spec.interface}


def _in_domain(project: dict[str, Any], domain: str | None) -> bool:
    # Project listings give domain ids only; the default domain's id is "default", its name "Default".
    return domain is None or str(project.get("domain_id", "")).lower() == domain.lower()
