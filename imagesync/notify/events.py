"""The event documents hooks and webhooks receive (DESIGN §9): one JSON object per event, secrets masked.

Every document has ``schema`` (1; fields may be added, never renamed), ``id`` (unique per event, the same on every
retry of a webhook), ``kind``, ``time`` and ``host``; then what the kind is about:

- ``image-added`` / ``image-updated`` / ``image-retired``: ``list``, ``image``, ``version``, ``title``, ``vo``,
  ``target``, ``target_id``, ``action``, ``reason``, ``result`` (``done`` or ``failed``), ``error``, ``bytes``
  (uploaded); an update also names the ids of the old versions it retires in ``supersedes``;
- ``list-failed``: ``list``, ``url`` (without credentials), ``result`` (``failed``), ``error``, ``expired`` (verified
  but past its ``dc:date:expires``);
- ``run-finished``: ``exit_code``, ``result`` (``ok``, ``partial``, ``nothing-done``, ``error``), ``error`` (why a
  run stopped early, else null), ``started_at``, ``finished_at``, ``summary`` (as in the JSON report), ``lists`` and
  ``targets`` (name, status, error).

Hooks also get each scalar field as ``IMAGESYNC_EVENT_<FIELD>`` (``kind`` -> ``IMAGESYNC_EVENT_KIND``, ``target_id``
-> ``IMAGESYNC_EVENT_TARGET_ID``, null as empty, booleans as ``true``/``false``) and each number of ``summary`` as
``IMAGESYNC_EVENT_SUMMARY_<KEY>`` (``IMAGESYNC_EVENT_SUMMARY_FAILED``); lists are in the JSON only.
"""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imagesync.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from imagesync.run.execute import ActionResult
from imagesync.run.pipeline import SyncResult, summary
from imagesync.sources.base import SourceOutcome
from imagesync.util import redact
from imagesync.util.textsafe import json_text, one_line

ENV_PREFIX = "IMAGESYNC_EVENT_"
_KINDS = {"add": "image-added", "update": "image-updated", "retire": "image-retired"}
_RESULTS = {EXIT_OK: "ok", EXIT_PARTIAL: "partial", EXIT_NOTHING_DONE: "nothing-done"}


@dataclass(frozen=True)
class Event:
    kind: str
    document: dict[str, Any]

    def body(self) -> bytes:
        """The JSON document as one line of UTF-8, what a hook reads on stdin and a webhook receives."""
        return json_text(json.dumps(self.document, ensure_ascii=False, sort_keys=True)).encode()

    def environment(self) -> dict[str, str]:
        """``IMAGESYNC_EVENT_*`` for each scalar field and each scalar of an object field (null as empty), every
        value one escaped line."""
        env = {}
        for key, value in self.document.items():
            inner = value.items() if isinstance(value, dict) else [("", value)]
            for sub, item in inner:
                if not isinstance(item, dict | list):
                    name = f"{key}_{sub}" if sub else key
                    env[ENV_PREFIX + name.upper().replace("-", "_")] = one_line(_env_text(item))
        return env


def _env_text(value: object) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _event(kind: str, now: datetime, fields: dict[str, Any]) -> Event:
    head = {"schema": 1, "id": str(uuid.uuid4()), "kind": kind, "time": _iso(now), "host": socket.gethostname()}
    return Event(kind, _masked({**head, **fields}))


def _masked(value: Any) -> Any:
    # Masked field by field, not in the dumped text: a secret's JSON escaping could hide it from a text search.
    if isinstance(value, str):
        return redact.text(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def for_action(result: ActionResult, *, now: datetime) -> Event | None:
    """The event of an add, update or retire that completed (done or failed); None for other actions.
    Raises nothing."""
    action = result.action
    kind = _KINDS.get(action.kind)
    if kind is None or result.status not in ("done", "failed"):
        return None
    desired = action.desired
    return _event(kind, now, {
        "list": action.list_name, "image": action.identifier, "version": action.version, "title": action.title,
        "vo": (desired.vo or desired.image.vo) if desired is not None else None,
        "target": action.target, "target_id": result.target_id, "action": action.kind, "reason": action.reason,
        "result": result.status, "error": result.error, "bytes": result.bytes_uploaded,
        "supersedes": list(action.supersedes) if action.kind == "update" else [],
    })


def for_list(outcome: SourceOutcome, *, now: datetime) -> Event | None:
    """The ``list-failed`` event of a list that could not be fetched, verified, parsed or accepted; else None.
    Raises nothing."""
    if outcome.status != "failed":
        return None
    return _event("list-failed", now, {
        "list": outcome.settings.name, "url": redact.url(outcome.settings.url), "result": "failed",
        "error": outcome.error, "expired": outcome.desire.expired,
    })


def run_finished(result: SyncResult, *, exit_code: int, now: datetime) -> Event:
    """The ``run-finished`` event of a run that got a result; ``exit_code`` is the one the process exits with.
    Raises nothing."""
    return _event("run-finished", now, {
        "exit_code": exit_code, "result": _RESULTS.get(exit_code, "error"), "error": None,
        "started_at": _iso(result.started_at), "finished_at": _iso(result.finished_at or now),
        "summary": summary(result),
        "lists": [{"name": o.settings.name, "status": o.status, "error": o.error} for o in result.lists],
        "targets": [{"name": t.name, "status": t.status, "error": t.error} for t in result.targets],
    })


def run_stopped(error: str, *, exit_code: int, started_at: datetime, now: datetime) -> Event:
    """The ``run-finished`` event of a run that stopped before it had a result (state.db unusable, ...).
    Raises nothing."""
    return _event("run-finished", now, {
        "exit_code": exit_code, "result": "error", "error": error, "started_at": _iso(started_at),
        "finished_at": _iso(now), "summary": None, "lists": [], "targets": [],
    })
