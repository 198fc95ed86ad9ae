"""Which Glance project an image lives in, and the client that reaches it (``ownership: shared | per-project``).

With ``shared`` (the default) every image belongs to the project imagesync authenticates to: one route, the
driver's own client. With ``per-project`` (what cloudkeeper-os and the EGI federation's sync do) each VO's copy is
created in the project its VO maps to, with a token scoped to that project, so it is owned there, private, and
needs no share; the imagesync user needs a role in each VO project and none elsewhere.

Every later call on an image (retire, update, delete, take-over) must use a token of the project that owns it:
a private image is invisible to any other project. So the inventory (and the adoption listing) remember where
each image was found (:meth:`Owners.remember`), and :meth:`Owners.of` routes by that memory; an id never listed
(none in a normal run: the plan acts only on listed images) goes through the driver's own client.

Drift between the modes: an image of ours found in a project other than the one its VO maps to (ownership changed
from shared to per-project, or the mapping changed) is reported :func:`misplaced`; the inventory hands it on as
not current, so the plan adds a copy in the right project and retires the old one by the normal rules (retire
mode, ``keep_versions``, ``delete_after``). Going back from per-project to shared is repaired the same way: the
shared inventory lists the target's own project, and also the mapped VO projects (:meth:`Owners.strays`) whenever
the plain listing may not be the whole truth, the rule that already decides the hidden listing
(:func:`imagesync.targets.glance.inventory.needs_hidden_listing`): a first run or a fresh state, or an image the
state remembers missing from the own project. Copies of ours found there are misplaced, so the own project gets a
copy and they retire; while a retired one stays (``deactivate``, ``hide``), later runs keep looking, as for hidden
images. A VO project the imagesync user cannot log in to is skipped with a warning: what cannot be seen is left
alone, never taken for deleted by anything but the state's memory.

Keystone logins for the VO projects are made one at a time, under a lock, and a login answered 5xx is tried once
more: a Keystone on SQLite (the dev cloud) answers two token requests at the same instant with HTTP 500 "database
is locked", and keystoneauth1 does not retry a token request by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1.adapter import Adapter

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage
from imagesync.targets import properties
from imagesync.targets.base import TargetError
from imagesync.targets.glance.auth import AuthSpec
from imagesync.util import redact

log = logging.getLogger(__name__)
_RELOGIN_PAUSE = 1.0
# One lock per Keystone, not per target: the targets of a federation run log in side by side, and several of them
# (projects or services of one cloud) may share a Keystone that answers simultaneous logins with "database is locked".
_KEYSTONES: dict[str, threading.Lock] = {}
_KEYSTONES_LOCK = threading.Lock()


def _keystone_lock(auth_url: str) -> threading.Lock:
    with _KEYSTONES_LOCK:
        return _KEYSTONES.setdefault(auth_url, threading.Lock())


@dataclass(frozen=True)
class Route:
    """How to reach one project: ``project`` None is the driver's own project, reached by its own client."""

    project: str | None
    client: Callable[[], Any]  # glanceclient v2 client, made on first use
    images: Any  # keystoneauth1 adapter of the image API, for listings and imports


class Owners:
    """Routes images to their projects for one target; logs in to a VO project when it is first needed."""

    def __init__(self, settings: TargetSettings, *, spec: AuthSpec, own: Route, own_id: Callable[[], str],
                 glance: Callable[[Any], Any], mapping: Callable[[], Mapping[str, str | TargetError]],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``own`` reaches the project imagesync authenticates to (whose id ``own_id`` gives); ``glance`` makes a
        client for a session; ``mapping`` gives VO -> project id (or why not), resolved once by the caller."""
        self.per_project = settings.ownership == "per-project"
        self._settings = settings
        self._spec = spec
        self._own = own
        self._own_id = own_id
        self._glance = glance
        self._mapping = mapping
        self._sleep = sleep
        self._routes: dict[str, Route] = {}
        self._where: dict[str, str | None] = {}
        self._lock = _keystone_lock(str(spec.options.get("auth_url") or ""))

    def project_for(self, desired: DesiredImage) -> str | None:
        """The project ``desired`` is to be created in (None: the own project, ownership shared). Raises
        TargetError when its VO is unmapped or its project unusable (the message says why)."""
        if not self.per_project:
            return None
        vo = properties.vo_of(desired)
        found = self._mapping().get(vo) if vo is not None else None
        if found is None:
            raise TargetError(f"VO {vo or '(none)'} of {desired.image.identifier} has no project in "
                              f"{self._settings.projects_file}", subject=f"target {self._settings.name}",
                              hint="add it to the mapping file (ownership per-project puts each image in its "
                                   "VO's project)")
        if isinstance(found, TargetError):
            raise TargetError(found.message, subject=found.subject, hint=found.hint)
        return found

    def listed(self) -> list[Route]:
        """The routes an inventory lists: the own project, then (per-project) each usable VO project once.
        Raises TargetError when the mapping cannot be resolved, keystoneauth1's errors for a failed login."""
        if not self.per_project:
            return [self._own]
        return [self._own, *(self.route(p) for p in self._vo_projects())]

    def strays(self) -> list[Route]:
        """Ownership shared with a VO mapping: the routes to the mapped VO projects other than the own one, where
        an earlier per-project run left copies; a project that cannot be logged in to is left out, with a warning.
        Empty with per-project (they are listed anyway) or without a mapping. Raises TargetError when the mapping
        cannot be resolved."""
        if self.per_project or (self._settings.projects_file is None and self._settings.projects is None):
            return []
        routes = []
        for project in self._vo_projects():
            try:
                routes.append(self.route(project))
            except ks_exc.ClientException as exc:
                log.warning("target=%s cannot look for earlier per-project copies in project %s: %s",
                            self._settings.name, project, redact.text(str(exc)))
        return routes

    def _vo_projects(self) -> list[str]:
        # The usable mapped projects other than the own one (which the own route lists), each once.
        own = self._own_id()
        return sorted({p for p in self._mapping().values() if isinstance(p, str) and p != own})

    def route(self, project: str | None) -> Route:
        """The route to ``project`` (None: the own one), logged in once per run. Raises keystoneauth1's
        errors when the login fails (after one retry of a 5xx answer)."""
        if project is None or project == self._own_id():
            return self._own  # a VO mapped to imagesync's own project: no second login
        with self._lock:  # upload threads and targets add side by side: one login at a time per Keystone (above)
            if project not in self._routes:
                self._routes[project] = self._login(project)
            return self._routes[project]

    def remember(self, target_id: str, route: Route) -> None:
        """Note that ``target_id`` was found through ``route`` (or created there)."""
        self._where[target_id] = route.project

    def of(self, target_id: str) -> Route:
        """The route to the project that owns ``target_id``, as listed or created this run. Raises as
        :meth:`route`."""
        return self.route(self._where.get(target_id))

    def misplaced(self, image: Mapping[str, Any], route: Route) -> bool:
        """Whether ``image`` (of ours, found through ``route``) lives outside the project it belongs in: with
        per-project, the one its VO maps to (when usable); with shared, the own project. Raises nothing once the
        mapping is resolved."""
        if not self.per_project:
            return route.project not in (None, self._own_id())  # shared: everything lives in the own project
        vo = image.get("ad_vo")
        wanted = self._mapping().get(vo) if isinstance(vo, str) else None
        if not isinstance(wanted, str):
            return False  # unmapped: nowhere better to put it; its add fails as planned
        return (route.project or self._own_id()) != wanted

    def vos_of(self, route: Route) -> tuple[str, ...]:
        """The VOs mapped to the project ``route`` reaches (per-project; none with shared). Raises as ``mapping``."""
        if not self.per_project:
            return ()
        project = route.project or self._own_id()
        return tuple(sorted(vo for vo, found in self._mapping().items() if found == project))

    def log_in(self) -> None:
        """Log in to the own project now, under the same rules as the VO projects' logins (one at a time per
        Keystone, once more after a 5xx): the targets of a run log in side by side. Raises keystoneauth1's errors."""
        with self._lock:
            self._patiently(self._own_id, "its own project")

    def _login(self, project: str) -> Route:
        session = self._spec.session(project_id=project)
        self._patiently(session.get_token, f"project {project}")
        images = Adapter(session, service_type="image", region_name=self._spec.region,
                         interface=self._spec.interface, endpoint_override=self._settings.endpoint)
        made: list[Any] = []

        def client() -> Any:
            if not made:
                made.append(self._glance(session))
            return made[0]

        return Route(project=project, client=client, images=images)

    def _patiently(self, login: Callable[[], object], what: str) -> None:
        try:
            login()
        except ks_exc.HttpError as exc:
            if not 500 <= int(exc.http_status or 0) < 600:
                raise
            log.warning("target=%s login to %s answered HTTP %s; trying once more", self._settings.name, what,
                        exc.http_status)
            self._sleep(_RELOGIN_PAUSE)
            login()
