"""``lists:`` and ``image-lists.conf``: the HEPiX image lists to follow, each one frozen :class:`ListSettings`.

Apart from :mod:`imagesync.config.settings`, which composes the whole configuration, because lists come from two
places with their own rules: a ``lists:`` entry is checked key by key (its token given once, by URL userinfo,
``token``, ``token_file`` or ``token_env``; its endorser; pinned GPG keys), while a bare URL in
``image-lists.conf`` gets defaults and a derived name, and is skipped when ``lists:`` already names its URL.
Tokens are registered with the redactor as they are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit, urlunsplit

from imagesync.config.read import Section
from imagesync.errors import ConfigError
from imagesync.sources.hepix.fetch import split_userinfo
from imagesync.util import redact

SignatureMode = Literal["smime", "gpg", "none"]
DEFAULT_LISTS_FILE = Path("/etc/imagesync/image-lists.conf")


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


def read(root: Section, base: Path) -> tuple[ListSettings, ...]:
    """The ``lists:`` entries, in order. Raises ConfigError."""
    return tuple(_list(sec, base) for sec in root.named_sections("lists"))


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

_COMMENT = re.compile(r"\s+#.*$")


def read_file(path: Path, explicit: tuple[ListSettings, ...]) -> tuple[ListSettings, ...]:
    """Lists named only in image-lists.conf get defaults; a URL already under ``lists:`` is not repeated.

    Raises ConfigError naming the file (and the line) when it cannot be read or a line is not a URL.
    """
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

