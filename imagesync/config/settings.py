"""``imagesync.yaml`` + ``image-lists.conf`` -> one frozen, validated :class:`Settings` (DESIGN §3).

Every problem is a :class:`ConfigError` naming the file, the dotted key and what is allowed. Relative paths are
resolved against the directory of the file that names them, so a config tree can be moved as a whole. The lists
(``lists:`` and ``image-lists.conf``) are read in :mod:`imagesync.config.lists`, hooks in
:mod:`imagesync.config.events`, OCI registries in :mod:`imagesync.config.registries`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Literal, cast

from imagesync.config import events as hookconfig
from imagesync.config import listen as listenconfig
from imagesync.config import lists as listconfig
from imagesync.config import registries as registryconfig
from imagesync.config import sites as siteconfig
from imagesync.config.events import EventSettings
from imagesync.config.listen import ListenSettings
from imagesync.config.lists import Endorser, ListSettings, SignatureMode, derive_name, split_token
from imagesync.config.mapping import ProjectRef
from imagesync.config.read import Section, parse_duration, read_yaml
from imagesync.config.registries import RegistrySettings
from imagesync.net.guard import Network, parse_networks
from imagesync.util.logfields import FACILITIES

DEFAULT_CONFIG = Path("/etc/imagesync/imagesync.yaml")
CrlMode = Literal["off", "if_present", "require"]
Ownership = Literal["shared", "per-project"]
UploadMethod = Literal["direct", "web-download", "glance-direct", "auto"]
UPLOAD_METHODS: tuple[UploadMethod, ...] = ("direct", "web-download", "glance-direct", "auto")
DRIVERS = ("glance", "noop", "directory")


@dataclass(frozen=True)
class TrustSettings:
    ca_dir: Path = Path("/etc/grid-security/certificates")
    crl: CrlMode = "if_present"
    gpg_home: Path = Path("/etc/imagesync/gnupg")
    allow_sha1: bool = False


@dataclass(frozen=True)
class DownloadSettings:
    concurrency: int = 2
    retries: int = 5
    timeout: float = 60.0
    min_free_space: int = 10 * 1024**3
    max_image_size: int = 200 * 1024**3
    max_list_size: int = 64 * 1024**2
    allowed_networks: tuple[Network, ...] = ()  # DESIGN §9: image hosts allowed beyond public addresses
    backoff: float = 1.0  # not YAML keys: list fetch patience, lowered at a terminal (imagesync.net.patience)
    max_delay: float = 300.0


@dataclass(frozen=True)
class RetirePolicy:
    mode: Literal["deactivate", "hide", "delete"] = "deactivate"
    keep_versions: int = 0
    delete_after: timedelta | None = timedelta(days=7)


@dataclass(frozen=True)
class TargetSettings:
    name: str
    driver: str
    tag: str = "imagesync"
    disk_formats: tuple[str, ...] = ("qcow2", "raw")
    visibility: Literal["private", "shared", "community", "public"] = "shared"
    retire: RetirePolicy = RetirePolicy()
    path: Path | None = None
    projects_file: Path | None = None
    cloud: str | None = None
    region: str | None = None
    interface: str | None = None
    endpoint: str | None = None
    auth: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Seconds any one Keystone or Glance call may wait for the server (as glanceclient's own CLI default): a
    # stalled cloud fails its actions instead of hanging the run. Also bounds the wait for Glance's answer
    # after an upload's last byte, so keep it generous.
    timeout: float = 600.0
    # Adds and updates pushed to this target at once while other images still download (imagesync.run.flow).
    upload_concurrency: int = 2
    # A site's VO -> project mapping, read with its site file (config.sites); projects_file then names that file.
    projects: Mapping[str, ProjectRef] | None = None
    ownership: Ownership = "shared"  # per-project: each VO's copy lives in its project (DESIGN §9)
    # How a Glance target gets the bytes (imagesync.targets.glance.importing): ``direct`` (the default: what
    # imagesync always did) streams them from this host; ``web-download`` / ``glance-direct`` use Glance's image
    # import; ``auto`` picks web-download where the cloud offers it and the image's URL needs nothing Glance lacks.
    upload: UploadMethod = "direct"
    stores: tuple[str, ...] = ()  # multi-store Glance: the stores an import writes to (default: Glance's default)
    all_stores: bool = False
    # Seconds an import may take until the image is active; then it is deleted and the bytes go direct.
    import_timeout: float = 1800.0
    # How long this target's part of a run may take, from the run's start; then its remaining actions fail
    # (imagesync.run.fanout). None: no deadline.
    deadline: timedelta | None = None


@dataclass(frozen=True)
class LogSettings:
    """``log:``: where records go besides stderr (DESIGN §9)."""

    syslog: bool = False
    syslog_socket: Path = Path("/dev/log")
    syslog_facility: str = "daemon"


@dataclass(frozen=True)
class Settings:
    source: Path | None
    state_dir: Path = Path("/var/lib/imagesync")
    cache_dir: Path = Path("/var/cache/imagesync")
    image_lists_file: Path | None = None
    trust: TrustSettings = TrustSettings()
    download: DownloadSettings = DownloadSettings()
    lists: tuple[ListSettings, ...] = ()
    targets: tuple[TargetSettings, ...] = ()
    # node_exporter textfile written at the end of every run that is not a dry run (imagesync.cli.metrics).
    metrics_file: Path | None = None
    log: LogSettings = LogSettings()
    events: EventSettings = field(default_factory=EventSettings)  # hooks, hook_timeout, webhooks (notify.deliver)
    registries: tuple[RegistrySettings, ...] = ()  # OCI registries, sources beside lists (config.registries)
    targets_concurrency: int = 4  # targets connected to and pushed to at once (imagesync.run.fanout)
    listen: ListenSettings = field(default_factory=ListenSettings)  # imagesync listen (config.listen)

    def list_named(self, name: str) -> ListSettings | None:
        return next((item for item in self.lists if item.name == name), None)


def config_path(explicit: str | None) -> Path:
    """The config file to use: ``--config``, else ``$IMAGESYNC_CONFIG``, else the default."""
    return Path(explicit or os.environ.get("IMAGESYNC_CONFIG") or DEFAULT_CONFIG)


def load(path: Path) -> Settings:
    """Read and validate ``path`` (and the image-lists file it names). Raises ConfigError."""
    raw = read_yaml(path)
    return from_mapping(raw if raw is not None else {}, source=path)


def from_mapping(raw: object, *, source: Path) -> Settings:
    """Validate an already parsed YAML document. Raises ConfigError."""
    root = Section.of(raw, source=source, key="")
    base = source.parent
    state_dir = root.path("state_dir", base, Settings.state_dir)
    cache_dir = root.path("cache_dir", base, Settings.cache_dir)
    lists_file = root.optional_path("image_lists_file", base)
    trust = _trust(root.section("trust"), base)
    download = _download(root.section("download"))
    explicit = listconfig.read(root, base)
    targets = tuple(_target(sec, base) for sec in root.named_sections("targets"))
    targets += _site_targets(root, base, targets, source)
    metrics_file = root.optional_path("metrics_file", base)
    log = _log(root.section("log"), base)
    events = hookconfig.read(root, base)
    registries = registryconfig.read(root, base)
    fanout = root.integer("targets_concurrency", Settings.targets_concurrency, minimum=1, maximum=64)
    listen = listenconfig.read(root, base)
    root.finish()
    if lists_file is None and listconfig.DEFAULT_LISTS_FILE.exists():
        lists_file = listconfig.DEFAULT_LISTS_FILE
    extra = listconfig.read_file(lists_file, explicit) if lists_file is not None else ()
    registryconfig.check_names(registries, ((item.name, item.url) for item in explicit + extra), source=source)
    return Settings(source=source, state_dir=state_dir, cache_dir=cache_dir, image_lists_file=lists_file,
                    trust=trust, download=download, lists=explicit + extra, targets=targets,
                    metrics_file=metrics_file, log=log, events=events, registries=registries,
                    targets_concurrency=fanout, listen=listen)


def _trust(sec: Section, base: Path) -> TrustSettings:
    result = TrustSettings(
        ca_dir=sec.path("ca_dir", base, TrustSettings.ca_dir),
        crl=cast(CrlMode, sec.choice("crl", ("off", "if_present", "require"), TrustSettings.crl)),
        gpg_home=sec.path("gpg_home", base, TrustSettings.gpg_home),
        allow_sha1=sec.boolean("allow_sha1", False),
    )
    sec.finish()
    return result


def _log(sec: Section, base: Path) -> LogSettings:
    d = LogSettings()
    result = LogSettings(syslog=sec.boolean("syslog", d.syslog),
                         syslog_socket=sec.path("syslog_socket", base, d.syslog_socket),
                         syslog_facility=sec.choice("syslog_facility", FACILITIES, d.syslog_facility))
    sec.finish()
    return result


def _download(sec: Section) -> DownloadSettings:
    d = DownloadSettings()
    result = DownloadSettings(
        concurrency=sec.integer("concurrency", d.concurrency, minimum=1, maximum=64),
        retries=sec.integer("retries", d.retries, minimum=0, maximum=100),
        timeout=float(sec.integer("timeout", int(d.timeout), minimum=1)),
        min_free_space=sec.size("min_free_space", d.min_free_space),
        max_image_size=sec.size("max_image_size", d.max_image_size),
        max_list_size=sec.size("max_list_size", d.max_list_size),
        allowed_networks=_networks(sec),
    )
    sec.finish()
    return result


def _networks(sec: Section) -> tuple[Network, ...]:
    try:
        return parse_networks(sec.string_list("allowed_networks"))
    except ValueError as exc:
        sec.fail("allowed_networks", str(exc))

def _target(sec: Section, base: Path) -> TargetSettings:
    result = _target_fields(sec, base, sec.choice("driver", DRIVERS, None, required=True))
    if result.driver == "directory" and result.path is None:
        sec.fail("path", "required for the directory driver")
    mapped = result.visibility == "shared" or result.ownership == "per-project"
    if result.driver == "glance" and mapped and result.projects_file is None:
        sec.fail("projects_file", "required with visibility shared or ownership per-project (VO -> project "
                 "mapping), or choose visibility private or community")
    sec.finish()
    return result


def _site_targets(root: Section, base: Path, explicit: tuple[TargetSettings, ...],
                  source: Path) -> tuple[TargetSettings, ...]:
    """One Glance target per site with ``images.sync: true``, ``site_defaults`` merged in. Raises ConfigError."""
    template = siteconfig.defaults(root.section("site_defaults"), lambda sec: _target_fields(sec, base, "glance"))
    sites = siteconfig.read(root, base)
    siteconfig.check_names(sites, (target.name for target in explicit), source=source)
    return tuple(replace(template, name=site.name, auth=siteconfig.auth_of(site, template.auth, source=source),
                         region=site.region or template.region, disk_formats=site.formats or template.disk_formats,
                         projects=site.projects, projects_file=site.file) for site in sites if site.sync)


def _target_fields(sec: Section, base: Path, driver: str) -> TargetSettings:
    retire = _retire(sec.section("retire"))
    auth = sec.options_with_files("auth", base)
    stores, all_stores = sec.string_list("stores"), sec.boolean("all_stores", False)
    if stores and all_stores:
        sec.fail("stores", "give store ids or all_stores: true, not both")
    return TargetSettings(
        name=sec.name, driver=driver, tag=sec.string("tag") or "imagesync",
        disk_formats=sec.string_list("disk_formats") or ("qcow2", "raw"),
        visibility=cast(Literal["private", "shared", "community", "public"],
                        sec.choice("visibility", ("private", "shared", "community", "public"), "shared")),
        retire=retire, path=sec.optional_path("path", base), projects_file=sec.optional_path("projects_file", base),
        cloud=sec.string("cloud"), region=sec.string("region"), interface=sec.string("interface"),
        endpoint=sec.string("endpoint"), auth=auth,
        timeout=float(sec.integer("timeout", int(TargetSettings.timeout), minimum=1)),
        upload_concurrency=sec.integer("upload_concurrency", TargetSettings.upload_concurrency, minimum=1,
                                       maximum=64),
        ownership=cast(Ownership, sec.choice("ownership", ("shared", "per-project"), "shared")),
        upload=cast(UploadMethod, sec.choice("upload", UPLOAD_METHODS, "direct")),
        stores=stores, all_stores=all_stores,
        import_timeout=float(sec.integer("import_timeout", int(TargetSettings.import_timeout), minimum=1)),
        deadline=sec.duration("deadline", None),
    )


def _retire(sec: Section) -> RetirePolicy:
    d = RetirePolicy()
    mode = sec.choice("mode", ("deactivate", "hide", "delete"), d.mode)
    result = RetirePolicy(
        mode=cast(Literal["deactivate", "hide", "delete"], mode),
        keep_versions=sec.integer("keep_versions", d.keep_versions, minimum=0),
        delete_after=sec.duration("delete_after", d.delete_after),
    )
    sec.finish()
    return result


__all__ = ["Endorser", "ListSettings", "Settings", "SignatureMode", "config_path", "derive_name", "from_mapping",
           "load", "parse_duration", "split_token"]
