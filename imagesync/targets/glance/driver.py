"""The Glance target (python-glanceclient v2 on a keystoneauth1 session).

Images are owned by the project imagesync authenticates to and carry its tag; with ``visibility: shared`` each
image is also shared with the project its VO maps to (:mod:`imagesync.targets.glance.share`). Sharing (rather than
owning the image in each VO project) keeps one owner: the inventory is one query, and one failing VO project never
hides the others' images. It needs the imagesync user to hold a role in every mapped project (as cloudkeeper-os
deployments already do). With ``ownership: per-project`` each image is created in its VO's project instead,
private and unshared, and every call on it goes to that project (:mod:`imagesync.targets.glance.owners`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from keystoneauth1.adapter import Adapter

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Held, Placement, RetireMode
from imagesync.targets import properties
from imagesync.targets.base import Capabilities, TargetError, Upload
from imagesync.targets.glance import inventory as listing
from imagesync.targets.glance.auth import AuthSpec, spec_for
from imagesync.targets.glance.checks import send, verify
from imagesync.targets.glance.errors import TargetCallError, calls
from imagesync.targets.glance.foreign import ATROPE_TAGS, Foreign, foreign, is_foreign
from imagesync.targets.glance.importing import Importer, Streak
from imagesync.targets.glance.owners import Owners, Route
from imagesync.targets.glance.share import Sharing
from imagesync.util import redact

log = logging.getLogger(__name__)
_GLANCE_FORMATS = {"vpc": "vhd"}
_CORE = ("disk_format", "container_format")


class GlanceDriver:
    capabilities = Capabilities(formats=("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", "iso"),
                                retire_modes=("deactivate", "hide", "delete"), visibility=True, sharing=True)

    def __init__(self, settings: TargetSettings, *, sleep: Any = time.sleep) -> None:
        """Prepare the session (nothing is contacted yet). Raises ConfigError for bad auth settings."""
        self.name = settings.name
        self.settings = settings
        self.tag = settings.tag
        self._spec: AuthSpec = spec_for(settings)
        self._session = self._spec.session()
        # The image API as glanceclient finds it (same catalog entry and override), for the listings.
        self._images = Adapter(self._session, service_type="image", region_name=self._spec.region,
                               interface=self._spec.interface, endpoint_override=settings.endpoint)
        self._made_client: Any = None
        self._sharing = Sharing(settings, session=self._session, spec=self._spec, client=lambda: self._client,
                                scoped=lambda project: self._owners.route(project).client(), calls=self._calls)
        self._orphans: list[str] = []
        self._sleep = sleep
        own = Route(project=None, client=lambda: self._client, images=self._images)
        self._owners = Owners(settings, spec=self._spec, own=own, own_id=lambda: str(self._session.get_project_id()),
                              glance=self._glance, mapping=self._sharing.resolved)
        self._importers: dict[str | None, Importer] = {}
        self._streak = Streak()  # failed imports in a row, over every project of this target

    @property
    def _client(self) -> Any:
        # Made on first use: a run that changes nothing here only lists, and never pays for importing glanceclient.
        if self._made_client is None:
            self._made_client = self._glance(self._session)
        return self._made_client

    def _glance(self, session: Any) -> Any:
        import glanceclient  # noqa: PLC0415 - only a run that changes images pays for it (about 0.1 s)

        extra = {"endpoint_override": self.settings.endpoint} if self.settings.endpoint else {}
        return glanceclient.Client("2", session=session, region_name=self._spec.region, interface=self._spec.interface,
                                   **extra)

    # -- what the target holds --------------------------------------------------------------------------------

    def inventory(self, *, known: Collection[str] | None = None) -> list[Held]:
        """Every image of our project carrying our tag; hidden ones are listed only when ``known`` (the ids the
        state remembers here) says they may matter (:mod:`imagesync.targets.glance.inventory`). Raises
        TargetError."""
        with self._calls("list images"):
            self._owners.log_in()
            routes = self._owners.listed()  # per-project: one listing per VO project, with its own token
            found = self._listings(routes, hidden=(False,))
            if listing.needs_hidden_listing(known, found):
                found.update(self._listings(routes, hidden=(True,)))
            if listing.needs_hidden_listing(known, found):  # shared: copies a per-project run left in VO projects
                found.update(self._listings(self._owners.strays(), hidden=(False, True)))
        for image_id, (_, route) in found.items():
            self._owners.remember(image_id, route)
        self._orphans = [i for i, (image, _) in found.items() if listing.is_orphan(image)]
        return [listing.held(image, misplaced=self._owners.misplaced(image, route))
                for image, route in found.values() if listing.is_live(image)]

    def _listings(self, routes: list[Route], *, hidden: tuple[bool, ...]) -> dict[str, tuple[Any, Route]]:
        return {i: (image, r) for r in routes for h in hidden for i, image in self._listing(r, hidden=h).items()}

    def _listing(self, route: Route, *, hidden: bool) -> dict[str, Any]:
        query = {"tag": self.tag, "owner": route.project or str(self._session.get_project_id())}
        if hidden:
            query["os_hidden"] = "true"  # hidden images are left out of plain listings
        return listing.list_images(route.images, query)

    def cleanup(self) -> list[str]:
        """Delete half-created images an interrupted run left behind (queued/saving with our tag)."""
        removed = []
        for image_id in self._orphans:
            with self._calls(f"delete leftover image {image_id}"):
                self._owners.of(image_id).client().images.delete(image_id)
            removed.append(image_id)
        self._orphans = []
        return removed

    # -- add ------------------------------------------------------------------------------------------------

    def add(self, upload: Upload) -> str:
        """Import (``upload:``, :mod:`imagesync.targets.glance.importing`) or upload, verify, then share.
        Raises TargetError; nothing of a failed add is left in Glance."""
        members = self._sharing.members_for(upload.desired)
        fields = self._fields(upload.desired, _glance_format(upload.disk_format), upload.virtual_size)
        project = self._owners.project_for(upload.desired)
        with self._calls(f"log in to project {project}"):
            route = self._owners.route(project)
        # An image Glance failed to pull is downloaded now (upload.local), once for all its targets.
        image_id = self._importer(route).add(upload, fields, self._visibility()) or self._direct(route, upload.local())
        self._owners.remember(image_id, route)
        try:
            self._sharing.share(image_id, members)
        except BaseException:
            self._delete_quietly(route, image_id)
            raise
        return image_id

    def pulls(self, desired: DesiredImage, disk_format: str) -> bool:
        """True when Glance fetches ``desired`` from its URL itself (``upload:``). Raises nothing."""
        # What the cloud offers is the same in every project: the target's own importer answers.
        return self._importer(self._owners.route(None)).pulls(desired, disk_format)

    def _importer(self, route: Route) -> Importer:
        # One per project: an import is created, polled and finished with a token of the project that owns it.
        if route.project not in self._importers:
            self._importers[route.project] = Importer(
                self.settings, client=route.client, images=route.images, calls=self._calls, sleep=self._sleep,
                streak=self._streak,
                verify=lambda image_id, upload: verify(route.client(), image_id, upload, target=self.name,
                                                       calls=self._calls))
        return self._importers[route.project]

    def _direct(self, route: Route, upload: Upload) -> str:
        fields = self._fields(upload.desired, _glance_format(upload.disk_format), upload.virtual_size)
        with self._calls(f"create image for {upload.desired.image.identifier}"):
            image_id = str(route.client().images.create(**fields, visibility=self._visibility())["id"])
        try:
            send(route.client(), image_id, upload, target=self.name, calls=self._calls, sleep=self._sleep)
            verify(route.client(), image_id, upload, target=self.name, calls=self._calls)
        except BaseException:
            self._delete_quietly(route, image_id)
            raise
        return image_id

    def _fields(self, desired: DesiredImage, disk_format: str, virtual_size: int) -> dict[str, Any]:
        props = properties.properties(desired, tag=self.tag, disk_format=disk_format, virtual_size=virtual_size)
        fields: dict[str, Any] = {key: props.pop(key) for key in _CORE}
        fields.update(name=properties.image_name(desired), tags=[self.tag], min_ram=int(props.pop("min_ram")),
                      min_disk=int(props.pop("min_disk")))
        return {**fields, **props}

    def _visibility(self) -> str:
        # An image its VO's project owns is visible to that project: sharing it there would add nothing.
        shared = self.settings.visibility == "shared"
        return "private" if shared and self._owners.per_project else self.settings.visibility

    # -- metadata and retirement --------------------------------------------------------------------------------

    def update_metadata(self, target_id: str, desired: DesiredImage, *, reactivate: bool) -> None:
        with self._calls(f"update {target_id}"):
            client = self._owners.of(target_id).client()
            image = client.images.get(target_id)
            fields = self._fields(desired, str(image["disk_format"]), int(image.get("virtual_size") or 0))
            for key in ("disk_format", "container_format", "tags"):
                fields.pop(key)
            stale = [k for k in image if k.startswith(("imagesync_", "vmcatcher_")) and k not in fields]
            client.images.update(target_id, remove_props=stale or None, visibility=self._visibility(),
                                 os_hidden=False, **fields)
            if reactivate and image["status"] == "deactivated":
                client.images.reactivate(target_id)
        self._sharing.share_missing(target_id, desired)

    def mapped_projects(self) -> dict[str, str | TargetError]:
        """VO -> project id, or why not, for shared visibility (empty otherwise), for ``imagesync check``.
        Raises TargetError when the mapping cannot be resolved at all."""
        return self._sharing.mapped_projects()

    def placement(self, desired: DesiredImage, disk_format: str | None) -> Placement:
        """Name, VO and project ``desired`` gets here, or the problem that stops it (an unmapped VO, a project
        the imagesync user cannot use). Raises TargetError when Keystone cannot be asked."""
        vo = properties.vo_of(desired)
        where = Placement(name=properties.image_name(desired), vo=vo, format=disk_format)
        if self.settings.visibility != "shared" and not self._owners.per_project:
            with self._calls("find the owner project"):
                owner = self._spec.options.get("project_name") or str(self._session.get_project_id())
            return replace(where, project=owner)
        try:
            self._sharing.members_for(desired)
            self._owners.project_for(desired)
        except TargetCallError:
            raise
        except TargetError as exc:
            return replace(where, project=self._sharing.project_of(vo), problem=exc.one_line())
        return replace(where, project=self._sharing.project_of(vo))

    def retire(self, target_id: str, mode: RetireMode) -> None:
        if mode == "hide":
            with self._calls(f"hide {target_id}"):
                self._owners.of(target_id).client().images.update(target_id, os_hidden=True)
        elif mode == "deactivate":
            self._deactivate(target_id)
        else:
            self._delete(target_id)

    def _deactivate(self, target_id: str) -> None:
        with self._calls(f"deactivate {target_id}"):
            client = self._owners.of(target_id).client()
            if client.images.get(target_id)["status"] == "active":
                client.images.deactivate(target_id)

    def _delete(self, target_id: str) -> None:
        try:
            with self._calls(f"delete {target_id}"):
                self._owners.of(target_id).client().images.delete(target_id)
        except TargetCallError as exc:
            if exc.status not in (403, 409):
                raise
            # In use or protected: take it out of service now, try the delete again next run.
            self._deactivate(target_id)
            with self._calls(f"make {target_id} private"):
                self._owners.of(target_id).client().images.update(target_id, visibility="private")
            raise TargetError(f"delete of {target_id} refused ({exc.message}); deactivated and made private, "
                              "will retry next run", subject=f"target {self.name}") from None

    # -- adoption of other tools' images ------------------------------------------------------------------------

    def foreign(self, source: str, *, tags: tuple[str, ...] = ATROPE_TAGS) -> list[Foreign]:
        """Images of our project uploaded by cloudkeeper-os (APPLIANCE_* properties) or atrope (any of ``tags``:
        Glance's tag filter matches images carrying all the tags given, so one listing a tag). Raises TargetError."""
        found: dict[str, tuple[Any, Route]] = {}
        with self._calls(f"list {source} images"):
            for route in self._owners.listed():  # per-project: the VO projects too, each with its own token
                owner = route.project or str(self._session.get_project_id())
                queries = [{"tag": tag, "owner": owner} for tag in tags] if source == "atrope" else [{"owner": owner}]
                for query in queries:
                    found.update((i, (image, route)) for i, image in listing.list_images(route.images, query).items())
        for image_id, (_, route) in found.items():
            self._owners.remember(image_id, route)
        return [replace(foreign(image, source), vos=self._owners.vos_of(route)) for image, route in found.values()
                if is_foreign(image, source, self.tag)]

    def take_over(self, image_id: str, desired: DesiredImage) -> None:
        """Put our tag and properties on an adopted image (no upload). Raises TargetError."""
        with self._calls(f"tag {image_id}"):
            self._owners.of(image_id).client().image_tags.update(image_id, self.tag)
        self.update_metadata(image_id, desired, reactivate=False)

    def close(self) -> None:
        self._session.session.close()

    # -- plumbing --------------------------------------------------------------------------------------------

    def _delete_quietly(self, route: Route, image_id: str) -> None:
        try:
            route.client().images.delete(image_id)
        except Exception as exc:
            log.warning("target=%s could not delete half-created image %s: %s", self.name, image_id,
                        redact.text(str(exc)))

    def _calls(self, what: str) -> AbstractContextManager[None]:
        return calls(self.name, what, self.settings.timeout, self._spec.options.get("auth_url"))


def _glance_format(disk_format: str) -> str:
    return _GLANCE_FORMATS.get(disk_format, disk_format)

