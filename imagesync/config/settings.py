"""``imagesync.yaml`` + ``image-lists.conf`` -> one frozen, validated :class:`Settings` (DESIGN §3).

Every problem is a :class:`ConfigError` naming the file, the dotted key and what is allowed. Relative paths are
resolved against the directory of the file that names them, so a config tree can be moved as a whole.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit, urlunsplit

from imagesync.config import events as hookconfig
from imagesync.config import registries as registryconfig
from imagesync.config.events import EventSettings
from imagesync.config.read import Section, parse_duration, read_yaml
from imagesync.config.registries import RegistrySettings
from imagesync.errors import ConfigError
from imagesync.net.guard import Network, parse_networks
from imagesync.sources.hepix.fetch import split_userinfo
from imagesync.util import redact
from imagesync.util.logfields import FACILITIES

DEFAULT_CONFIG = Path("/etc/imagesync/imagesync.yaml")
SignatureMode = Literal["smime", "gpg", "none"]
CrlMode = Literal["off", "if_present", "require"]
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
class Endorser:
    dn: str
    ca: str


@dataclass(frozen=True)
class ListSettings:
    name: str
    url: str
    # repr=False: a Settings object printed in a traceback must not leak the token.
    token: str | None = field(default=None, repr=False)
    signature: SignatureMode = "smime"
    endorser: Endorser | None = None
    images: tuple[str, ...] = ()
    prefix: str = ""
    vo: str | None = None
    on_expiry: Literal["retire", "keep"] = "retire"
    enabled: bool = True
    gpg_fingerprints: tuple[str, ...] = ()
    signature_url: str | None = None


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
    explicit = tuple(_list(sec, base) for sec in root.named_sections("lists"))
    targets = tuple(_target(sec, base) for sec in root.named_sections("targets"))
    metrics_file = root.optional_path("metrics_file", base)
    log = _log(root.section("log"), base)
    events = hookconfig.read(root, base)
    registries = registryconfig.read(root, base)
    root.finish()
    if lists_file is None and DEFAULT_LISTS_FILE.exists():
        lists_file = DEFAULT_LISTS_FILE
    extra = _read_lists_file(lists_file, explicit) if lists_file is not None else ()
    registryconfig.check_names(registries, ((item.name, item.url) for item in explicit + extra), source=source)
    return Settings(source=source, state_dir=state_dir, cache_dir=cache_dir, image_lists_file=lists_file,
                    trust=trust, download=download, lists=explicit + extra, targets=targets,
                    metrics_file=metrics_file, log=log, events=events, registries=registries)


DEFAULT_LISTS_FILE = Path("/etc/imagesync/image-lists.conf")


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


def _list(sec: Section, base: Path) -> ListSettings:
    url, url_token = split_token(sec.string("url", required=True) or "", sec)
    token = _token(sec, url_token, base)
    endorser = _endorser(sec.section("endorser")) if sec.has("endorser") else None
    result = ListSettings(
        name=sec.name,
        url=url,
        token=token,
        signature=cast(SignatureMode, sec.choice("signature", ("smime", "gpg", "none"), "smime")),
        endorser=endorser,
        images=sec.string_list("images"),
        prefix=sec.string("prefix") or "",
        vo=sec.string("vo"),
        on_expiry=cast(Literal["retire", "keep"], sec.choice("on_expiry", ("retire", "keep"), "retire")),
        enabled=sec.boolean("enabled", True),
        gpg_fingerprints=tuple(f.replace(" ", "").upper() for f in sec.string_list("gpg_fingerprints")),
        signature_url=sec.string("signature_url"),
    )
    if result.signature == "gpg" and not result.gpg_fingerprints:
        sec.fail("gpg_fingerprints", "required when signature is gpg (pin the signing keys)")
    sec.finish()
    return result


def _endorser(sec: Section) -> Endorser:
    result = Endorser(dn=sec.string("dn", required=True) or "", ca=sec.string("ca", required=True) or "")
    sec.finish()
    return result


def _token(sec: Section, url_token: str | None, base: Path) -> str | None:
    sources = [key for key in ("token", "token_file", "token_env") if sec.has(key)]
    if url_token is not None:
        sources.append("url userinfo")
    if len(sources) > 1:
        sec.fail(sources[0], f"give the token only once (found: {', '.join(sources)})")
    token = url_token
    if sec.has("token"):
        token = sec.string("token")
    elif sec.has("token_file"):
        token = sec.secret_file("token_file", base)
    elif sec.has("token_env"):
        token = sec.secret_env("token_env")
    redact.register(token)
    return token or None


def split_token(url: str, sec: Section | None = None) -> tuple[str, str | None]:
    """Split URL userinfo (an embedded AppDB token) off ``url``; return the clean URL and the token."""
    try:
        parts = urlsplit(url.strip())
        _ = parts.port
    except ValueError:
        if sec is not None:
            sec.fail("url", "not a valid URL")
        raise ConfigError("not a valid URL", subject=redact.url(url)) from None
    clean, token = split_userinfo(urlunsplit(parts))
    redact.register(token)
    return clean, token


def _target(sec: Section, base: Path) -> TargetSettings:
    driver = sec.choice("driver", DRIVERS, None, required=True)
    retire = _retire(sec.section("retire"))
    auth = sec.options_with_files("auth", base)
    result = TargetSettings(
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
    )
    if driver == "directory" and result.path is None:
        sec.fail("path", "required for the directory driver")
    if driver == "glance" and result.visibility == "shared" and result.projects_file is None:
        sec.fail("projects_file", "required with visibility shared (VO -> project mapping), "
                 "or choose visibility private or community")
    sec.finish()
    return result


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


_COMMENT = re.compile(r"\s+#.*$")


def _read_lists_file(path: Path, explicit: tuple[ListSettings, ...]) -> tuple[ListSettings, ...]:
    """Lists named only in image-lists.conf get defaults; a URL already under ``lists:`` is not repeated."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read image lists file: {exc.strerror}", subject=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"image lists file is not UTF-8 text (byte {exc.start})", subject=str(path)) from None
    known_urls = {item.url for item in explicit}
    names = {item.name for item in explicit}
    result: list[ListSettings] = []
    for number, line in enumerate(lines, start=1):
        text = _COMMENT.sub("", line).strip()
        if not text or text.startswith("#"):
            continue
        url, token = _lists_file_url(text, path, number)
        if url in known_urls:
            continue
        known_urls.add(url)
        name = _unique(derive_name(url), names)
        names.add(name)
        result.append(ListSettings(name=name, url=url, token=token))
    return tuple(result)


def _lists_file_url(text: str, path: Path, number: int) -> tuple[str, str | None]:
    try:
        url, token = split_token(text)
    except ConfigError:
        raise ConfigError(f"line {number}: not a valid URL", subject=str(path)) from None
    if urlsplit(url).scheme not in ("http", "https", "file"):
        raise ConfigError(f"line {number}: expected an http(s):// or file:// URL", subject=str(path))
    return url, token


_APPDB = re.compile(r"/store/(?:vo|vappliance)/(?P<name>[^/]+)/image\.list$")


def derive_name(url: str) -> str:
    """A stable, readable list name for a bare URL: the VO or appliance for AppDB, else host + path."""
    parts = urlsplit(url)
    match = _APPDB.search(parts.path)
    raw = match.group("name") if match else f"{parts.hostname or 'file'}{parts.path}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.")
    return name or "list"


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 2
    while candidate in taken:
        candidate, counter = f"{name}-{counter}", counter + 1
    return candidate


__all__ = ["Settings", "config_path", "derive_name", "from_mapping", "load", "parse_duration", "split_token"]
