"""``sites_dir:`` / ``sites_file:`` (DESIGN §9): a federation's sites, in the shape EGI keeps them.

The files are those of fedcloud-catchall-operations ``sites/*.yaml``, one site each::

    gocdb: BIFI                                    # the site's name, which becomes the target's name
    endpoint: https://keystone.example.org:5000/v3 # Keystone, the auth_url of the target
    region: RegionOne                              # optional
    images: {sync: true, formats: [qcow2, raw]}    # only sites with sync: true become targets
    vos:
      - name: ops
        auth: {project_id: 038db3eeca5c4960a443a89b92373cd2}

``sites_file:`` holds a list of such mappings in one file. Keys imagesync has no use for (``protocol`` is used
for OIDC logins only, ``auth``, ``accounting``, and anything under a VO besides ``name`` and ``auth.project_id``)
are accepted and left alone; the keys of the site and of ``images`` are otherwise checked as strictly as the main
config (that project's schema refuses other keys too), every error naming the site file. Turning a site into a
target (``site_defaults`` merged in) is :mod:`imagesync.config.settings`' part.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from imagesync.config.mapping import ProjectRef
from imagesync.config.read import Section, read_yaml
from imagesync.errors import ConfigError

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # the rule of target names (config.read.named_sections)
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Site:
    """One site file's entry: what imagesync needs of it to make a Glance target."""

    name: str  # the GOCDB name
    file: Path  # where it is written, for messages ("VO x has no project in <file>")
    endpoint: str  # Keystone URL
    sync: bool
    region: str | None = None
    protocol: str | None = None  # the Keystone federation protocol of OIDC logins
    formats: tuple[str, ...] = ()
    projects: Mapping[str, ProjectRef] = field(default_factory=dict)


def read(root: Section, base: Path) -> tuple[Site, ...]:
    """Every site of ``sites_dir`` (``*.yaml``, ``*.yml``, in name order) and ``sites_file``, syncing or not.
    Raises ConfigError naming the file, for a missing directory, a malformed site or a name given twice."""
    sites_dir = root.optional_path("sites_dir", base)
    sites_file = root.optional_path("sites_file", base)
    found = [*(_dir(sites_dir) if sites_dir else ()), *(_list_file(sites_file) if sites_file else ())]
    _check_unique(found)
    return tuple(found)


def check_names(sites: Iterable[Site], targets: Iterable[str], *, source: Path) -> None:
    """Refuse a syncing site named like a ``targets:`` entry: state and reports know a target by its name alone.
    Raises ConfigError naming both."""
    explicit = set(targets)
    for site in sites:
        if site.sync and site.name in explicit:
            raise ConfigError(f"targets.{site.name}: site {site.name} of {site.file} has the same name",
                              subject=str(source),
                              hint="rename the target, or set images.sync: false in the site file")


def _dir(path: Path) -> Iterator[Site]:
    if not path.is_dir():
        problem = "does not exist" if not path.exists() else "is not a directory"
        raise ConfigError(f"sites_dir: {path} {problem}", hint="point sites_dir at a directory of site files")
    # Other files (a README, editor backups) are not sites; the catchall repository keeps only YAML there.
    for file in sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file()):
        yield _site(Section.of(read_yaml(file), source=file, key=""), file)


def _list_file(path: Path) -> Iterator[Site]:
    raw = read_yaml(path)
    if not isinstance(raw, list):
        raise ConfigError("expected a list of sites (each with gocdb, endpoint, images, vos)", subject=str(path))
    for index, item in enumerate(raw):
        yield _site(Section.of(item, source=path, key=f"[{index}]"), path)


def _site(sec: Section, file: Path) -> Site:
    name = sec.string("gocdb", required=True) or ""
    if not _NAME.fullmatch(name):
        sec.fail("gocdb", f"{name!r} cannot name a target (letters, digits, '_', '.', '-')")
    images = sec.section("images")
    sync, formats = images.boolean("sync", False), images.string_list("formats")
    images.finish()
    site = Site(name=name, file=file, endpoint=_endpoint(sec), sync=sync, region=sec.string("region"),
                protocol=sec.string("protocol"), formats=formats, projects=_projects(sec, file, name))
    sec.string("auth")  # the login method: site_defaults.auth decides it, with the secrets
    sec.section("accounting")  # another tool's business
    sec.finish()
    return site


def _endpoint(sec: Section) -> str:
    value = (sec.string("endpoint", required=True) or "").strip()
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        sec.fail("endpoint", f"{value!r} is not a valid URL")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        sec.fail("endpoint", f"{value!r} is not a Keystone URL (https://host:5000/v3)")
    if parts.username is not None or parts.password is not None:
        sec.fail("endpoint", "credentials do not belong in the URL (site_defaults.auth holds them)")
    return value


def _projects(sec: Section, file: Path, site: str) -> dict[str, ProjectRef]:
    projects: dict[str, ProjectRef] = {}
    for vo in sec.section_list("vos"):
        # VO entries may carry more (per-VO regions, other tools' keys): only name and auth.project_id are read.
        name = vo.string("name", required=True) or ""
        auth = vo.section("auth")
        project = auth.string("project_id")
        if name in projects:
            vo.fail("name", f"VO {name} is listed twice")
        if not project:
            # The catchall schema allows it (a VO logging in with its own credentials): nothing to share with.
            log.warning("site=%s vo=%s no auth.project_id in %s: the VO's images are not shared there",
                        site, name, file)
            continue
        projects[name] = ProjectRef(project=project)
    return projects


def _check_unique(sites: list[Site]) -> None:
    seen: dict[str, Path] = {}
    for site in sites:
        if site.name in seen:
            raise ConfigError(f"gocdb: site {site.name} is also described in {seen[site.name]}", subject=str(site.file),
                              hint="keep one file per site")
        seen[site.name] = site.file


class _WithAuth(Protocol):
    @property
    def auth(self) -> Mapping[str, str]: ...


T = TypeVar("T", bound=_WithAuth)


def defaults(sec: Section, fields: Callable[[Section], T]) -> T:
    """``site_defaults:`` read by ``fields`` (the reader of a target's keys), without the keys each site gives
    itself or that make no sense for a site. Raises ConfigError."""
    for key, why in (("driver", "sites are Glance clouds"), ("projects_file", "each site's vos: map its projects"),
                     ("cloud", "each site's endpoint is its Keystone"), ("endpoint", "Glance is found in each "
                     "site's catalog"), ("path", "sites are Glance clouds")):
        if sec.has(key):
            sec.fail(key, f"not a site default: {why}")
    result = fields(sec)
    sec.finish()
    if "auth_url" in result.auth:
        sec.fail("auth.auth_url", "not a site default: each site's endpoint is its auth_url")
    return result


def auth_of(site: Site, auth: Mapping[str, str], *, source: Path) -> dict[str, str]:
    """The inline ``auth:`` of ``site``'s target: ``site_defaults.auth`` with the site's endpoint as auth_url,
    and for OIDC logins the site's Keystone protocol. Raises ConfigError when there is no ``site_defaults.auth``."""
    if not auth:
        raise ConfigError(f"site_defaults.auth: required to log in to site {site.name} ({site.file}); its "
                          "endpoint becomes auth_url", subject=str(source),
                          hint="e.g. auth: {auth_type: v3applicationcredential, application_credential_id: ..., "
                          "application_credential_secret_file: ...}")
    result = {**auth, "auth_url": site.endpoint}
    if site.protocol and auth.get("auth_type", "").startswith("v3oidc"):
        result["protocol"] = site.protocol
    return result
