"""``listen:`` (DESIGN §9): where ``imagesync listen`` takes change events, and how it trusts and paces them.

The secret is required: an endpoint that starts syncs must not be open to anyone who can reach the port. It is
read from a file (like every secret here) and registered with the redactor. ``debounce``, ``max_wait``,
``max_body`` and ``queue_limit`` go beyond DESIGN §9's keys: they are the pacing and bounds the issue asks for,
with defaults that suit a registry sending one notification per layer and manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from imagesync.config.read import Section
from imagesync.util import redact


@dataclass(frozen=True)
class ListenSettings:
    address: str = "127.0.0.1"
    port: int = 8780
    # repr=False: a Settings object printed in a traceback must not show the secret.
    secret: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A source's sync starts once no event for it came for this long (a burst of pushes becomes one run) ...
    debounce: timedelta = timedelta(seconds=10)
    # ... or at the latest this long after its first event, so a steady trickle still syncs.
    max_wait: timedelta = timedelta(seconds=120)
    max_body: int = 1024 * 1024  # bytes; a larger request is refused (413) unread
    queue_limit: int = 1000  # sources waiting at once; a further new source is refused (503), never dropped silently

    @property
    def configured(self) -> bool:
        return self.secret is not None


def read(root: Section, base: Path) -> ListenSettings:
    """The ``listen:`` section of ``root`` (defaults when absent; then ``listen`` refuses to start). Paths resolve
    against ``base``. Raises ConfigError naming the key."""
    if not root.has("listen"):
        return ListenSettings()
    sec = root.section("listen")
    secret = sec.secret_file("secret_file", base) if sec.has("secret_file") else None
    if secret is None:
        sec.fail("secret_file", "required: the endpoint starts syncs, so requests must prove they know a secret")
    if len(secret) < 16:
        sec.fail("secret_file", "the secret is shorter than 16 characters; e.g. openssl rand -hex 32 > FILE")
    redact.register(secret)
    result = ListenSettings(
        address=sec.string("address") or ListenSettings.address,
        port=sec.integer("port", ListenSettings.port, minimum=0, maximum=65535),
        secret=secret, tls_cert=sec.optional_path("tls_cert", base), tls_key=sec.optional_path("tls_key", base),
        debounce=_seconds(sec, "debounce", ListenSettings.debounce),
        max_wait=_seconds(sec, "max_wait", ListenSettings.max_wait),
        max_body=sec.size("max_body", ListenSettings.max_body),
        queue_limit=sec.integer("queue_limit", ListenSettings.queue_limit, minimum=1, maximum=100_000))
    if (result.tls_cert is None) != (result.tls_key is None):
        sec.fail("tls_key" if result.tls_key is None else "tls_cert", "tls_cert and tls_key go together")
    if result.max_wait < result.debounce:
        sec.fail("max_wait", "shorter than debounce: every source would wait max_wait, never debounce")
    sec.finish()
    return result


def _seconds(sec: Section, key: str, default: timedelta) -> timedelta:
    value = sec.duration(key, default)  # 0 is a choice (no pause); null means the default here
    return default if value is None else value
