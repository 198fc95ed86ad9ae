"""TLS trust for HTTPS fetches: the system store plus the grid CA directory, immune to the environment.

Trust is the system store plus every CA in the grid CA directory (``ca_dir``), applied through our own SSL
context on a mounted adapter, so REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE cannot replace it: a bundle named by those
variables is honoured only as an *addition* (what operators expect of them, and it never drops the grid CAs).
Proxies from the environment keep working because ``trust_env`` stays on.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from imagesync import __version__
from imagesync.errors import FetchError
from imagesync.net.guard import AddressGuard, GuardedAdapter

log = logging.getLogger(__name__)

# IGTF directories hold certificates as <hash>.N next to CRLs (.rN), policies and info files.
_CA_FILE = re.compile(r"^[0-9a-f]{8}\.\d+$|\.(pem|crt)$")
_ENV_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class _TrustAdapter(HTTPAdapter):
    """An adapter whose TLS trust is our SSL context, whatever ``verify`` requests computed from the environment."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: Any,
                                             cert: Any = None) -> Any:
        # ``verify`` (possibly an env bundle path) is deliberately ignored: the pool key carries our context.
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
        pool: dict[str, Any] = dict(pool_kwargs)
        pool.pop("ca_certs", None)
        pool.pop("ca_cert_dir", None)
        pool.update(ssl_context=self._context, cert_reqs="CERT_REQUIRED")
        return host_params, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # urllib3 would load these files *into our context* on connect: trust must come from the context alone.
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.cert_reqs = "CERT_REQUIRED"


class _GuardedTrustAdapter(GuardedAdapter, _TrustAdapter):
    """Our TLS trust, and connections only to addresses the guard allows."""


def trusting_session(ca_dir: Path | None, session: requests.Session | None = None, *,
                     guard: AddressGuard | None = None) -> requests.Session:
    """``session`` (or a new one) set up to trust the system store plus ``ca_dir``, whatever the environment's
    CA bundle variables say; with ``guard``, http and https connect only where it allows (image downloads).
    Raises FetchError if ``ca_dir`` cannot be read."""
    session = session or requests.Session()
    session.headers["User-Agent"] = f"imagesync/{__version__}"
    context = trust_context(ca_dir)
    if guard is None:
        session.mount("https://", _TrustAdapter(context))
    else:
        session.mount("https://", _GuardedTrustAdapter(guard, context))
        session.mount("http://", GuardedAdapter(guard))
    return session


def trust_context(ca_dir: Path | None) -> ssl.SSLContext:
    """System store + every CA file in ``ca_dir`` + the env bundle if set. Raises FetchError on an unreadable dir."""
    context = ssl.create_default_context()
    if ca_dir is not None:
        try:
            entries = sorted(p for p in Path(ca_dir).iterdir() if _CA_FILE.search(p.name) and p.is_file())
        except OSError as exc:
            raise FetchError(f"cannot read CA directory {ca_dir}: {exc.strerror}",
                             hint="check trust.ca_dir") from exc
        for entry in entries:
            try:
                context.load_verify_locations(cafile=str(entry))
            except (ssl.SSLError, OSError) as exc:
                log.debug("skipping %s in CA directory: %s", entry, exc)
    for variable, bundle in extra_bundles(os.environ, ssl.get_default_verify_paths().cafile):
        _add_env_bundle(context, variable, bundle)
    return context


def extra_bundles(environ: Mapping[str, str], default_cafile: str | None) -> list[tuple[str, str]]:
    """(variable, path) of each CA bundle the environment adds to the system store, each file once: a bundle
    that is the store's own file (``default_cafile``) or named twice adds nothing but another 20 ms of parsing
    per context. Pure; raises nothing."""
    seen = {os.path.realpath(default_cafile)} if default_cafile else set()
    extra = []
    for variable in _ENV_BUNDLES:
        bundle = environ.get(variable)
        if bundle and os.path.realpath(bundle) not in seen:
            seen.add(os.path.realpath(bundle))
            extra.append((variable, bundle))
    return extra


def _add_env_bundle(context: ssl.SSLContext, variable: str, bundle: str) -> None:
    try:
        if os.path.isdir(bundle):
            context.load_verify_locations(capath=bundle)
        else:
            context.load_verify_locations(cafile=bundle)
    except (ssl.SSLError, OSError) as exc:
        log.warning("ignoring %s=%s: %s", variable, bundle, exc)
