"""How a failed Glance or Keystone call is told: one line naming the target, the call and the cause, with a hint,
and whether trying again may help."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from keystoneauth1 import exceptions as ks_exc

from imagesync.errors import ImagesyncError, brief
from imagesync.targets.base import TargetError
from imagesync.targets.unreachable import unreachable
from imagesync.util import redact


@contextmanager
def calls(target: str, what: str, timeout: float, auth_url: str | None = None) -> Iterator[None]:
    """Turn the client libraries' exceptions inside the block into TargetCallError about ``what`` on ``target``,
    whose calls wait ``timeout`` seconds at most and authenticate at ``auth_url``; others pass unchanged."""
    try:
        yield
    except ImagesyncError:
        raise
    except Exception as exc:
        error = _translated(exc, target, what, timeout, auth_url)
        if error is None:
            raise
        raise error from None


def _translated(exc: Exception, target: str, what: str, timeout: float,
                auth_url: str | None) -> TargetCallError | None:
    # glanceclient is imported by the first call that changes an image (a no-op run only lists, through
    # keystoneauth1): until it is, none of its exceptions can have been raised.
    glance_exc = sys.modules.get("glanceclient.exc")
    if glance_exc is not None and isinstance(exc, glance_exc.HTTPException):
        code = _http_status(exc)
        return _target_error(target, what, f"Glance answered HTTP {code}: {brief(exc)}", code)
    if isinstance(exc, ks_exc.Unauthorized):
        return _target_error(target, what, "Keystone refused the credentials (HTTP 401)", 401)
    if isinstance(exc, ks_exc.HttpError):
        code = int(exc.http_status or 0)
        return _target_error(target, what, f"HTTP {code}: {brief(exc)}", code)
    if isinstance(exc, ks_exc.ClientException | OSError) or (
            glance_exc is not None and isinstance(exc, glance_exc.BaseException)):
        return _target_error(target, what, _cause(exc, timeout, auth_url), 0, retry=True)
    return None


def _cause(exc: BaseException, timeout: float, auth_url: str | None) -> str:
    # glanceclient rewraps keystoneauth's timeout as "Error communicating with <URL> Request to <URL> timed out":
    # cut to one line's length, that says everything but what happened.
    if isinstance(exc, ks_exc.ConnectTimeout) or isinstance(exc.__context__, ks_exc.ConnectTimeout):
        return f"no answer within {timeout:g}s (timed out)"
    found = unreachable(exc, auth_url)
    if found is not None:
        return found
    return f"cannot connect: {brief(exc)}" if isinstance(exc, ks_exc.ConnectFailure) else brief(exc)


class TargetCallError(TargetError):
    """A Glance or Keystone call that failed; ``status`` is the HTTP status (0 without an answer)."""

    def __init__(self, message: str, *, subject: str, status: int, retryable: bool, hint: str | None) -> None:
        super().__init__(message, subject=subject, hint=hint)
        self.status = status
        self.retryable = retryable


def _target_error(target: str, what: str, detail: str, status: int, *, retry: bool = False) -> TargetCallError:
    hint = {401: "check the target's credentials", 403: "the imagesync user lacks the permission (policy/role)",
            415: "Glance's format check refused the data"}.get(status)
    return TargetCallError(redact.text(f"{what}: {detail}"), subject=f"target {target}", status=status,
                           retryable=retry or status >= 500, hint=hint)


def _http_status(exc: Any) -> int:
    # glanceclient has classes for some statuses only; others (Glance 33's 415 format check) arrive as a bare
    # HTTPException whose code is "N/A" and whose details start with the status line.
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = re.match(r"\s*(\d{3})\b", str(getattr(exc, "details", "") or ""))
    return int(found.group(1)) if found else 0
