"""``hooks:``, ``hook_timeout:`` and ``webhooks:`` (DESIGN §9) -> one frozen :class:`EventSettings`.

Kept out of config.py (already long) like the other sections would be: config.py only calls :func:`read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from imagesync.config.read import Section
from imagesync.util import redact

# What happens in a run that an operator may want to hear about, in the order a run meets them.
EVENTS = ("list-failed", "image-added", "image-updated", "image-retired", "run-finished")


@dataclass(frozen=True)
class Hook:
    """The command run for one event (argv, never a shell string)."""

    event: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Webhook:
    """A URL that receives the events it names by POST, signed when it has a secret."""

    url: str
    # repr=False: a Settings printed in a traceback must not show the key.
    secret: str | None = field(default=None, repr=False)
    events: tuple[str, ...] = EVENTS
    timeout: float = 10.0  # seconds per attempt (connect and each read)
    retries: int = 3  # further attempts after a 5xx, a 429 or a connection that failed


@dataclass(frozen=True)
class EventSettings:
    hooks: tuple[Hook, ...] = ()
    hook_timeout: float = 30.0
    webhooks: tuple[Webhook, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.hooks or self.webhooks)

    def hook_for(self, event: str) -> Hook | None:
        return next((hook for hook in self.hooks if hook.event == event), None)


def read(root: Section, base: Path) -> EventSettings:
    """The event settings from the top-level section; relative command paths resolve against ``base``.
    Raises ConfigError naming the key."""
    hooks = _hooks(root.section("hooks"), base)
    timeout = float(root.integer("hook_timeout", int(EventSettings.hook_timeout), minimum=1, maximum=3600))
    webhooks = tuple(_webhook(sec, base) for sec in root.section_list("webhooks"))
    return EventSettings(hooks=hooks, hook_timeout=timeout, webhooks=webhooks)


def _hooks(sec: Section, base: Path) -> tuple[Hook, ...]:
    hooks = []
    for event in EVENTS:
        if sec.has(event):
            argv = sec.argv(event)
            # A bare name is looked up in PATH; a relative path means the config's directory, like every path here.
            command = argv[0] if "/" not in argv[0] else str(sec.resolve(event, argv[0], base))
            hooks.append(Hook(event, (command, *argv[1:])))
    sec.finish()
    return tuple(hooks)


def _webhook(sec: Section, base: Path) -> Webhook:
    url = sec.string("url", required=True) or ""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is no number or out of range
    except ValueError:
        sec.fail("url", "not a valid URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        sec.fail("url", "expected an http:// or https:// URL")
    secret = sec.secret_file("secret_file", base) if sec.has("secret_file") else None
    redact.register(secret)
    events = sec.string_list("events") or EVENTS
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        sec.fail("events", f"{unknown[0]!r} is not an event (events: {', '.join(EVENTS)})")
    result = Webhook(url=url, secret=secret, events=events,
                     timeout=float(sec.integer("timeout", int(Webhook.timeout), minimum=1, maximum=600)),
                     retries=sec.integer("retries", Webhook.retries, minimum=0, maximum=10))
    sec.finish()
    return result
