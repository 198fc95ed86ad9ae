"""Answering a registry's ``401``: the distribution spec's Bearer token flow, or Basic credentials.

A registry names how to authenticate in ``WWW-Authenticate``. ``Bearer realm=...,service=...,scope=...`` means: get a
token for that scope from the realm (with Basic credentials if we have them, anonymously otherwise) and send it as
``Authorization: Bearer``; ``Basic realm=...`` means: send the credentials themselves. Tokens are cached per scope
until shortly before they expire, and a token the registry refuses is dropped and fetched once more.
Credentials and tokens never appear in messages, logs or reprs.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from imagesync.errors import FetchError
from imagesync.net.guard import AddressRefused
from imagesync.sources.oci.content import read_capped
from imagesync.util import redact

log = logging.getLogger(__name__)

# The spec's default token lifetime when a token service gives none; renew a little before expiry.
_DEFAULT_LIFETIME = 60.0
_MARGIN = 10.0
_TOKEN_BODY_CAP = 64 * 1024
# auth-param = token "=" ( token / quoted-string ); scope values hold commas ("pull,push"), hence the quoting.
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


class RegistryError(FetchError):
    """A registry could not be reached, refused us, or answered something unusable; ``subject`` names it."""


@dataclass(frozen=True)
class Credentials:
    """A registry login; the password is registered with the redactor and never shown in a repr."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        redact.register(self.password)

    def basic_header(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` challenge: the scheme in lower case and its parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` value, or None if there is none we can read. Raises nothing."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if not scheme or "=" in scheme:
        return None
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            break  # a second challenge or junk: the first challenge's parameters are what we have
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        position = match.end()
    return Challenge(scheme.lower(), params)


@dataclass(frozen=True)
class _Token:
    value: str
    expires: float


Timeouts = tuple[float, float]


class Authorizer:
    """The ``Authorization`` header for each request to one registry, learnt from its challenges. Thread-safe."""

    def __init__(self, session: requests.Session, registry: str, credentials: Credentials | None, *,
                 timeouts: Timeouts, clock: Callable[[], float] = time.monotonic, token: str | None = None) -> None:
        """``token`` is a static bearer token (``token_file:``), sent with every request instead of any login."""
        self._static = token
        if token:
            redact.register(token)
        self._session = session
        self._registry = registry
        self._credentials = credentials
        self._timeouts = timeouts
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._basic = False  # the registry asked for Basic: send it up front from now on
        self._lock = threading.Lock()

    def headers(self, scope: str) -> dict[str, str]:
        """What to send with a request needing ``scope`` (``repository:<name>:pull``): a cached token, Basic
        credentials once the registry has asked for them, or nothing."""
        if self._static:
            return {"Authorization": f"Bearer {self._static}"}
        with self._lock:
            token = self._tokens.get(scope)
            if token is not None and token.expires > self._clock():
                return {"Authorization": f"Bearer {token.value}"}
            if self._basic and self._credentials is not None:
                return {"Authorization": self._credentials.basic_header()}
        return {}

    def basic(self) -> dict[str, str]:
        """The Basic Authorization header of the credentials (empty when anonymous), for Harbor's REST API; the
        static token instead when one is configured."""
        if self._static:
            return {"Authorization": f"Bearer {self._static}"}
        return {"Authorization": self._credentials.basic_header()} if self._credentials is not None else {}

    def answer(self, response: requests.Response, scope: str) -> bool:
        """Learn from a ``401``: fetch a token or switch to Basic. False if there is nothing new to send (no
        credentials for Basic, or an unreadable challenge). Raises RegistryError if the token service fails."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if challenge is None or self._static:
            return False  # a static token refused: nothing else to try
        with self._lock:
            self._tokens.pop(scope, None)  # refused: never send that token again
        if challenge.scheme == "basic":
            if self._credentials is None:
                return False
            self._check_secure(response.url, "credentials")
            with self._lock:
                self._basic = True
            return True
        if challenge.scheme != "bearer" or not challenge.params.get("realm"):
            return False
        token = self._fetch_token(challenge.params, scope)
        with self._lock:
            self._tokens[scope] = token
        return True

    def bearer(self, scope: str) -> str | None:
        """The cached token for ``scope`` if still valid (for a downloader's headers). Raises nothing."""
        with self._lock:
            token = self._tokens.get(scope)
        return token.value if token is not None and token.expires > self._clock() else None

    def _fetch_token(self, params: Mapping[str, str], scope: str) -> _Token:
        realm = params["realm"]
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            self._check_secure(realm, "credentials to the token service")
            headers["Authorization"] = self._credentials.basic_header()
        log.debug("registry=%s token request realm=%s scope=%s", self._registry, redact.url(realm), query["scope"])
        try:
            response = self._session.get(realm, params=query, headers=headers, timeout=self._timeouts,
                                         allow_redirects=False, stream=True)
        except AddressRefused as refused:
            raise self._error(f"refused to connect to token service {_origin(realm)}: {refused}",
                              refused.hint) from refused
        except requests.RequestException as exc:
            raise self._error(f"token service {_origin(realm)} unreachable ({type(exc).__name__})",
                              "check the registry's token realm and the network") from exc
        with response:
            return self._parse_token(response, realm)

    def _parse_token(self, response: requests.Response, realm: str) -> _Token:
        code = response.status_code
        if code in (401, 403):
            hint = "check the username and password" if self._credentials else "this registry needs credentials"
            raise self._error(f"token service {_origin(realm)} refused the "
                              f"{'credentials' if self._credentials else 'anonymous request'} (HTTP {code})", hint)
        if code != 200:
            raise self._error(f"token service {_origin(realm)} answered HTTP {code}", "try again later")
        try:
            data = json.loads(read_capped(response, _TOKEN_BODY_CAP))
            value = data.get("token") or data.get("access_token")
            lifetime = float(data.get("expires_in") or _DEFAULT_LIFETIME)
        except (ValueError, AttributeError, TypeError, requests.RequestException) as exc:
            raise self._error(f"token service {_origin(realm)} sent no readable token", "check the registry") from exc
        if not isinstance(value, str) or not value:
            raise self._error(f"token service {_origin(realm)} sent no token", "check the registry")
        return _Token(value, self._clock() + max(lifetime - _MARGIN, 1.0))

    def _check_secure(self, url: str, what: str) -> None:
        if urlsplit(url).scheme.lower() != "https":
            raise self._error(f"refusing to send {what} over plain HTTP to {_origin(url)}",
                              "use an https:// registry URL")

    def _error(self, message: str, hint: str) -> RegistryError:
        return RegistryError(redact.text(message), subject=f"registry {self._registry}", hint=hint)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return redact.text(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")
