"""What one action of a plan came to, and its one log record."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from imagesync.model import Action
from imagesync.util.logfields import fields

log = logging.getLogger("imagesync.run.execute")  # the logger these records always had
Status = Literal["planned", "done", "failed", "skipped"]


@dataclass(frozen=True)
class ActionResult:
    action: Action
    status: Status
    error: str | None = None
    target_id: str | None = None
    # Bytes sent to the target (the file uploaded by an add or update); 0 for every other action.
    bytes_uploaded: int = 0
    # Bytes the target fetched from the image's URL itself (imagesync.run.pull): neither downloaded nor uploaded here.
    bytes_pulled: int = 0


_DONE = {"add": "image added", "update": "image updated", "update-metadata": "metadata updated",
         "retire": "image retired", "keep": "image kept"}


def log_action(result: ActionResult, *, seconds: float | None = None) -> None:
    """One record per action: ERROR when it failed, DEBUG for a keep (nothing happened), else INFO."""
    action = result.action
    if result.status == "failed":
        level, message = logging.ERROR, f"{action.kind} failed"
    else:
        level = logging.DEBUG if action.kind == "keep" else logging.INFO
        message = _DONE[action.kind] if result.status == "done" else f"{action.kind} {result.status}"
    log.log(level, "%s", message, extra=fields(
        list=action.list_name, image=action.identifier, version=action.version, target=action.target,
        action=action.kind, result=result.status, target_id=result.target_id,
        bytes=result.bytes_uploaded or None, seconds=round(seconds, 3) if seconds is not None else None,
        error=result.error))
