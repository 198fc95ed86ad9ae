"""What to say when Keystone or Glance cannot be reached at all: the service, its URL and why, in one line.

keystoneauth and glanceclient bury that under three layers of wrapped exceptions ("Error finding address for
<glance URL>: Unable to establish connection to <keystone URL>/auth/tokens: HTTPConnectionPool(host=...):
Max retries exceeded ... NewConnectionError(...)"); cut to a line's length, the part that matters is lost.
The innermost URL keystoneauth names is the one that failed; the OS error in the chain is why.
"""

from __future__ import annotations

import re
import socket
import ssl
from urllib.parse import urlsplit

from urllib3.exceptions import NameResolutionError

from imagesync.net.failures import has_cause
from imagesync.util import redact

_FAILED_URL = re.compile(r"Unable to establish connection to (\S+?):? ")
_REASONS: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((ConnectionRefusedError,), "connection refused"),
    ((NameResolutionError, socket.gaierror), "host name not found"),
    ((ssl.SSLCertVerificationError,), "TLS certificate not trusted (set cacert in auth)"),
    ((ssl.SSLError,), "TLS handshake failed"),
    ((ConnectionResetError, BrokenPipeError), "connection reset"),
    ((OSError,), "network unreachable or connection failed"),
)


def unreachable(exc: BaseException, auth_url: str | None) -> str | None:
    """``cannot reach Keystone at <auth_url>: connection refused`` (or the URL of another service) when ``exc``
    is a connection that failed before any answer; None for every other error. Raises nothing."""
    match = _FAILED_URL.search(str(exc))
    if match is None:
        return None
    reason = next((text for kinds, text in _REASONS if has_cause(exc, *kinds)), "connection failed")
    failed = match.group(1)
    if auth_url and _origin(failed) == _origin(auth_url):
        return f"cannot reach Keystone at {redact.url(auth_url)}: {reason}"
    return f"cannot reach {redact.url(_origin(failed))}: {reason}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
