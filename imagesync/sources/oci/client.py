"""One OCI distribution registry (Harbor or any other) over HTTPS: tags, manifests, referrers and blobs.

The session trusts what the lists' fetches trust (system store + CA directory, :mod:`imagesync.net.tls`) and connects
only where image downloads may (:mod:`imagesync.net.guard`): a registry, its token realm and its blob redirects are
addresses taken from configuration and from the registry's own answers. Authentication follows the registry's
challenges (:mod:`imagesync.sources.oci.auth`). Every failure is one :class:`RegistryError` line naming the
registry, what was asked and why it failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urljoin, urlsplit

import requests

from imagesync.net.failures import request_failure
from imagesync.net.guard import AddressGuard, AddressRefused, Network, Resolver, system_resolver
from imagesync.net.policy import FetchPolicy
from imagesync.net.tls import trusting_session
from imagesync.sources.oci import content
from imagesync.sources.oci.auth import Authorizer, Credentials, RegistryError
from imagesync.sources.oci.content import BlobRequest, ContentError, Descriptor, Manifest
from imagesync.util import redact

log = logging.getLogger(__name__)

MANIFEST_CAP = 4 * 1024 * 1024
_INDEX_CAP = 4 * 1024 * 1024
_TAGS_CAP = 4 * 1024 * 1024
_PAGE_SIZE = 1000
_MAX_PAGES = 1000


class NotFoundError(RegistryError):
    """The repository, tag, manifest or blob does not exist (HTTP 404)."""


class ReferrersUnsupportedError(RegistryError):
    """The registry has no OCI 1.1 referrers API (404 on ``/referrers/``): use the tag schema instead."""


class DigestMismatchError(RegistryError):
    """The registry served bytes that do not hash to the digest they were asked or announced by."""


class RegistryClient:
    """A client of one registry base URL; thread-safe (tokens are cached per repository scope)."""

    def __init__(self, base_url: str, *, credentials: Credentials | None = None, ca_dir: Path | None = None,
                 allowed_networks: Sequence[Network] = (), connect_timeout: float = 10.0, timeout: float = 60.0,
                 session: requests.Session | None = None, resolve: Resolver = system_resolver,
                 token: str | None = None) -> None:
        """Prepare the session for ``base_url`` (``https://host[:port]``). ``allowed_networks`` are reachable besides
        public addresses (a site's own registry is usually private). Raises RegistryError for a URL that is not
        http(s) or has a path, FetchError if ``ca_dir`` cannot be read. ``token`` is a static bearer token sent
        instead of any login."""
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query:
            raise RegistryError(f"not a registry base URL: {redact.url(base_url)}", hint="use https://host[:port]")
        self.base_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.name = parts.netloc.rpartition("@")[2]
        self._policy = FetchPolicy(connect_timeout=connect_timeout, timeout=timeout, ca_dir=ca_dir)
        self._session = trusting_session(ca_dir, session, guard=AddressGuard(allowed_networks, resolve))
        self._auth = Authorizer(self._session, self.name, credentials, timeouts=(connect_timeout, timeout),
                                token=token)
        self._user = credentials.username if credentials else None

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, user={self._user!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``, following ``Link: rel="next"`` pages. Raises RegistryError (NotFoundError
        for an unknown repository)."""
        what = f"tags of {self._checked(content.check_repository, repository, repository)}"
        url: str | None = f"{self.base_url}/v2/{repository}/tags/list?n={_PAGE_SIZE}"
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= _MAX_PAGES:
                raise self._error(f"cannot list {what}: pagination does not end", "report it to the registry")
            seen.add(url)
            with self._request("GET", url, repository, what) as response:
                tags.extend(self._page_tags(response, what))
                url = self._next_page(response, what)
        return tags

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest ``tag`` points at, by HEAD (cheap: no body); by GET when the registry sends no digest on HEAD.
        Raises RegistryError (NotFoundError for an unknown tag)."""
        what = f"manifest {repository}:{self._checked(content.check_tag, tag, repository)}"
        with self._request("HEAD", self._manifest_url(repository, tag), repository, what,
                           accept=", ".join(content.MANIFEST_TYPES)) as response:
            digest = response.headers.get("Docker-Content-Digest", "")
        try:
            return content.check_digest(digest)
        except ContentError:
            log.debug("registry=%s %s: no usable digest on HEAD, getting the manifest", self.name, what)
            return self.manifest(repository, tag).digest

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest or index at ``reference`` (tag or digest), at most 4 MiB, its bytes checked against the
        digest asked for and the one the registry announces. Raises RegistryError (NotFoundError,
        DigestMismatchError)."""
        what = f"manifest {repository}@{reference}" if ":" in reference else f"manifest {repository}:{reference}"
        self._checked(content.check_reference, reference, repository)
        with self._request("GET", self._manifest_url(repository, reference), repository, what,
                           accept=", ".join(content.MANIFEST_TYPES), stream=True) as response:
            raw = self._read(response, MANIFEST_CAP, what)
            announced = response.headers.get("Docker-Content-Digest")
            content_type = response.headers.get("Content-Type")
        try:
            expected = [d for d in (reference if ":" in reference else None, announced) if d]
            for digest in expected:
                content.verify_digest(raw, digest, what)
        except ContentError as exc:
            raise self._mismatch(what, exc) from exc
        try:
            return content.parse_manifest(raw, content_type, expected[0] if expected else content.digest_of(raw))
        except ContentError as exc:
            raise self._error(f"cannot use {what}: {exc}", "not an OCI or Docker v2 manifest") from exc

    def referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """OCI 1.1 referrers of ``digest`` (signatures, SBOMs), of ``artifact_type`` if given. Raises
        ReferrersUnsupportedError when the registry has no referrers API (404), RegistryError otherwise."""
        what = f"referrers of {repository}@{self._checked(content.check_digest, digest, repository)}"
        url = f"{self.base_url}/v2/{repository}/referrers/{digest}"
        params = {"artifactType": artifact_type} if artifact_type else None
        try:
            with self._request("GET", url, repository, what, accept=content.OCI_INDEX, stream=True,
                               params=params) as response:
                raw = self._read(response, _INDEX_CAP, what)
                filtered = "artifacttype" in response.headers.get("OCI-Filters-Applied", "").lower()
        except NotFoundError as exc:
            raise ReferrersUnsupportedError(exc.message, subject=exc.subject,
                                            hint="use the tag schema fallback") from exc
        try:
            found = content.parse_manifest(raw, content.OCI_INDEX, content.digest_of(raw)).descriptors("manifests")
        except ContentError as exc:
            raise self._error(f"cannot use {what}: {exc}", "report it to the registry") from exc
        return found if filtered or not artifact_type else [d for d in found if d.artifact_type == artifact_type]

    def referrers_or_tag_schema(self, repository: str, digest: str,
                                artifact_type: str | None = None) -> list[Descriptor]:
        """:meth:`referrers`, or on a registry without that API the index tagged ``<alg>-<hex>`` (the OCI 1.1
        fallback); no such tag means no referrers. Raises RegistryError."""
        try:
            return self.referrers(repository, digest, artifact_type)
        except ReferrersUnsupportedError:
            log.debug("registry=%s has no referrers API; trying the tag schema", self.name)
        tag = digest.replace(":", "-", 1)
        try:
            index = self.manifest(repository, tag)
        except NotFoundError:
            return []
        if not index.is_index:
            raise self._error(f"fallback tag {repository}:{tag} is not an index", "report it to its publisher")
        found = self._descriptors(index, "manifests", f"index {repository}:{tag}")
        return [d for d in found if not artifact_type or d.artifact_type == artifact_type]

    def blob(self, repository: str, digest: str) -> BlobRequest:
        """Where and how to stream blob ``digest``: its URL and the headers to send (a fresh token if the registry
        wants one; requests drops Authorization itself on a redirect to another host). Confirms the blob exists.
        Raises RegistryError (NotFoundError)."""
        what = f"blob {repository}@{self._checked(content.check_digest, digest, repository)}"
        url = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        with self._request("HEAD", url, repository, what, redirects=False) as response:
            length = response.headers.get("Content-Length", "")
            size = int(length) if response.status_code == 200 and length.isdigit() else None
        return BlobRequest(url, self._auth_headers(repository), digest, size)

    def fetch_blob_bytes(self, repository: str, digest: str, max_bytes: int) -> bytes:
        """A small blob (a signature payload, a config) in memory, digest-checked, at most ``max_bytes``.
        Raises RegistryError (NotFoundError, DigestMismatchError)."""
        what = f"blob {repository}@{self._checked(content.check_digest, digest, repository)}"
        url = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        with self._request("GET", url, repository, what, stream=True) as response:
            data = self._read(response, max_bytes, what)
        try:
            content.verify_digest(data, digest, what)
        except ContentError as exc:
            raise self._mismatch(what, exc) from exc
        return data

    # -- requests -------------------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, repository: str, what: str, *, accept: str | None = None,
                 stream: bool = False, params: dict[str, str] | None = None,
                 redirects: bool = True) -> requests.Response:
        """Send, answering one 401 challenge; a 2xx (or a redirect when not following) or RegistryError."""
        scope = f"repository:{repository}:pull"
        for attempt in range(2):
            headers = {**self._auth.headers(scope), **({"Accept": accept} if accept else {})}
            log.debug("registry=%s %s %s", self.name, method, redact.url(url))
            response = self._send(method, url, headers=headers, stream=stream, params=params, redirects=redirects,
                                  what=what)
            if response.status_code != 401 or attempt == 1 or not self._answer(response, scope, what):
                break
            response.close()
        try:
            self._check_status(response, what, redirects)
        except RegistryError:
            response.close()
            raise
        return response

    def _answer(self, response: requests.Response, scope: str, what: str) -> bool:
        try:
            return self._auth.answer(response, scope)
        except RegistryError as exc:
            response.close()
            raise self._error(f"cannot get {what}: {exc.message}", exc.hint or "check the registry") from exc

    def _send(self, method: str, url: str, *, headers: dict[str, str], stream: bool,
              params: dict[str, str] | None, redirects: bool, what: str) -> requests.Response:
        try:
            return self._session.request(method, url, headers=headers, params=params, stream=stream,
                                         allow_redirects=redirects,
                                         timeout=(self._policy.connect_timeout, self._policy.timeout))
        except AddressRefused as refused:
            raise self._error(f"cannot get {what}: refused to connect: {refused}", refused.hint) from refused
        except requests.RequestException as exc:
            failed = request_failure(exc, url, self._policy)
            # Its message leads with "cannot fetch <url>: "; ours names the registry and the object instead.
            cause = failed.message.removeprefix(f"cannot fetch {redact.url(url)}: ")
            raise self._error(f"cannot get {what}: {cause}", failed.hint) from exc

    def _check_status(self, response: requests.Response, what: str, redirects: bool) -> None:
        code = response.status_code
        if 200 <= code < 300 or (not redirects and 300 <= code < 400):
            return
        where = f"cannot get {what}: HTTP {code}"
        if code == 404:
            raise NotFoundError(f"{where}: not found", subject=f"registry {self.name}", hint="check the name")
        if code == 401:
            hint = "check the username and password" if self._user else "this registry needs credentials"
            raise self._error(f"{where}: {'credentials refused' if self._user else 'authentication required'}", hint)
        if code == 403:
            raise self._error(f"{where}: forbidden", "check that the account may pull this repository")
        if code == 429 or code >= 500:
            raise self._error(f"{where}: registry busy or failing", "try again later")
        raise self._error(where, "check the registry")

    def _auth_headers(self, repository: str) -> dict[str, str]:
        return self._auth.headers(f"repository:{repository}:pull")

    def _read(self, response: requests.Response, cap: int, what: str) -> bytes:
        try:
            return content.read_capped(response, cap)
        except ContentError as exc:
            raise self._error(f"cannot get {what}: {exc}", "not registry content, or the cap is too small") from exc
        except requests.RequestException as exc:
            raise self._error(f"cannot get {what}: connection failed while reading ({type(exc).__name__})",
                              "network or registry trouble; try again") from exc

    # -- pages, names, errors -----------------------------------------------------------------------------------

    def _page_tags(self, response: requests.Response, what: str) -> list[str]:
        raw = self._read(response, _TAGS_CAP, what)
        try:
            return content.parse_tags(raw)
        except ContentError as exc:
            raise self._error(f"cannot read {what}: {exc}", "check the registry") from exc

    def _next_page(self, response: requests.Response, what: str) -> str | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        url = urljoin(response.url, link)
        # Credentials and tokens go to the registry only: a Link elsewhere is not followed.
        if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
            raise self._error(f"cannot list {what}: next page on another host", "report it to the registry")
        return url

    def _descriptors(self, manifest: Manifest, key: str, what: str) -> list[Descriptor]:
        try:
            return manifest.descriptors(key)
        except ContentError as exc:
            raise self._error(f"cannot use {what}: {exc}", "report it to its publisher") from exc

    def _manifest_url(self, repository: str, reference: str) -> str:
        return f"{self.base_url}/v2/{repository}/manifests/{reference}"

    def _checked(self, check: content.Check, value: str, repository: str) -> str:
        try:
            content.check_repository(repository)
            return check(value)
        except ContentError as exc:
            raise self._error(str(exc), "check the configured repository, tag or digest") from exc

    def _mismatch(self, what: str, exc: ContentError) -> DigestMismatchError:
        return DigestMismatchError(redact.text(str(exc)), subject=f"registry {self.name}",
                                   hint="the registry serves wrong bytes: do not use them; tell its operator")

    def _error(self, message: str, hint: str) -> RegistryError:
        return RegistryError(redact.text(message), subject=f"registry {self.name}", hint=hint)
