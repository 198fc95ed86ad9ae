"""POSTing event documents to one webhook URL, signed, with retries; failures logged, never raised.

Each request carries ``Content-Type: application/json``, ``X-Imagesync-Event: <kind>``, ``X-Imagesync-Delivery:
<the document's id>`` (the same on every retry, so a receiver can drop duplicates) and, with a ``secret_file``,
``X-Imagesync-Signature: sha256=<hex>``: the HMAC-SHA256 of the exact body bytes under the file's content (as
``imagesync listen`` expects of its callers, DESIGN §9). A receiver recomputes it over the raw body and compares in
constant time.

TLS trust is the lists': the system store plus ``trust.ca_dir`` (:func:`imagesync.net.tls.trusting_session`). Webhook
URLs are the operator's own, so the download address guard does not apply. Logs name a webhook by scheme, host and
port only: chat webhooks carry their credential in the path.

A 5xx, a 429, a timeout or a failed connection is tried again (1 s, 2 s, 4 s ... or the server's Retry-After, at most
60 s); any other answer but 2xx is final (redirects are not followed: configure the final URL). Once a webhook has
given up on an event it is considered down for the rest of the run, so a dead receiver costs one round of retries,
not one per event; the events it misses are counted in one WARNING.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from imagesync.config.events import Webhook
from imagesync.errors import brief
from imagesync.net.failures import retry_after
from imagesync.net.tls import trusting_session
from imagesync.notify.events import Event
from imagesync.util.logfields import fields

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Imagesync-Signature"
_DELAY_CAP = 60.0


def signature(secret: str, body: bytes) -> str:
    """The value of the signature header for ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``.
    Raises nothing."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def display_name(url: str) -> str:
    """``scheme://host[:port]`` of a webhook URL: enough to recognise it, never its path, query or userinfo.
    Raises ValueError for a port that is no number (the configuration refuses such URLs)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class _Retry(Exception):
    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class Sender:
    """Delivers events to one webhook over one session; not thread-safe (the notifier uses one thread)."""

    def __init__(self, hook: Webhook, *, ca_dir: Path | None, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff: float = 1.0) -> None:
        """Raises FetchError if ``ca_dir`` cannot be read."""
        self.hook = hook
        self.name = display_name(hook.url)
        self._session = trusting_session(ca_dir, session)
        self._sleep = sleep
        self._backoff = backoff
        self._down = False
        self.missed = 0

    def wants(self, event: Event) -> bool:
        return event.kind in self.hook.events

    def send(self, event: Event) -> bool:
        """POST ``event``; True when the webhook accepted it (2xx). Logs failures, raises nothing."""
        if self._down:
            self.missed += 1
            return False
        body = event.body()
        headers = {"Content-Type": "application/json", "X-Imagesync-Event": event.kind,
                   "X-Imagesync-Delivery": str(event.document.get("id", ""))}
        if self.hook.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.hook.secret, body)
        attempts = self.hook.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                refused = self._post(body, headers)
            except _Retry as retry:
                if attempt == attempts:
                    self._down = True
                    self._log(logging.WARNING, "webhook failed", event, f"{retry}; gave up after {attempt} attempt(s)")
                    return False
                delay = retry.after if retry.after is not None else self._backoff * 2 ** (attempt - 1)
                self._sleep(min(delay, _DELAY_CAP))
                continue
            if refused is not None:
                self._log(logging.WARNING, "webhook refused the event", event, refused)
                return False
            self._log(logging.DEBUG, "webhook delivered", event, None)
            return True
        return False  # not reached: the last attempt returns either way

    def _log(self, level: int, message: str, event: Event, error: str | None) -> None:
        log.log(level, "%s", message, extra=fields(webhook=self.name, event=event.kind,
                                                   result="done" if error is None else "failed", error=error))

    def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """One attempt: None when accepted, the reason when refused for good. Raises _Retry."""
        try:
            response = self._session.post(self.hook.url, data=body, headers=headers, allow_redirects=False,
                                          timeout=(self.hook.timeout, self.hook.timeout))
        except requests.Timeout:
            raise _Retry(f"no answer within {self.hook.timeout:g} s") from None
        except requests.RequestException as exc:
            raise _Retry(f"cannot connect: {self._scrubbed(brief(exc, 240))}") from None
        with response:
            code = response.status_code
            if code == 429 or code >= 500:
                raise _Retry(f"HTTP {code}", retry_after(response.headers.get("Retry-After")))
            if not 200 <= code < 300:
                hint = " (redirects are not followed: configure the final URL)" if 300 <= code < 400 else ""
                return f"HTTP {code}{hint}"
        return None

    def _scrubbed(self, message: str) -> str:
        # requests names the URL's path in its messages, and a chat webhook's path is its credential.
        parts = urlsplit(self.hook.url)
        for secretive in (parts.path, parts.query):
            if len(secretive) > 1:
                message = message.replace(secretive, "/...")
        return message

    def close(self) -> None:
        """Say how many events a webhook that went down missed; release the connections."""
        if self.missed:
            log.warning("webhook down: later events not sent", extra=fields(
                webhook=self.name, result="skipped", error=f"{self.missed} later event(s) of this run not sent"))
        self._session.close()

