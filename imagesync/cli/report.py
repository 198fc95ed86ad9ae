"""Rendering of results for people (text) and programs (JSON, DESIGN §2). No decisions are made here.

Text reports show fields chosen by list publishers and servers: every line is escaped on its own
(:func:`imagesync.util.textsafe.one_line`), so no field can end a line early and forge the next one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imagesync.model import Placement, Signer
from imagesync.util import redact
from imagesync.util.textsafe import one_line

if TYPE_CHECKING:  # `lists` and `verify` report without loading a run's machinery (execute, download, convert)
    from imagesync.config.settings import ListSettings
    from imagesync.run.execute import ActionResult
    from imagesync.run.pipeline import SyncResult
    from imagesync.sources.base import Accepted, SourceOutcome
    from imagesync.state.store import StateStore


def iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def list_entry(outcome: SourceOutcome) -> dict[str, Any]:
    """One ``lists[]`` entry of the JSON report."""
    entry: dict[str, Any] = {
        "name": outcome.settings.name, "kind": outcome.kind, "url": redact.url(outcome.settings.url),
        "status": outcome.status,
        "error": outcome.error, "signature": outcome.settings.signature,
        "unsigned": outcome.settings.signature == "none",
        "identifier": None, "created": None, "expires": None, "signer": None, "images": None,
        "problems": list(outcome.problems),
    }
    if outcome.accepted is not None:
        entry.update(accepted_fields(outcome.accepted))
    return entry


def accepted_fields(accepted: Accepted) -> dict[str, Any]:
    signer = accepted.signer
    return {
        "identifier": accepted.identifier, "created": iso(accepted.created), "expires": iso(accepted.expires),
        "signer": {"dn": signer.dn, "ca": signer.ca} if signer is not None else None,
        "images": accepted.image_count,
    }


def _text(lines: Iterable[str]) -> str:
    """Lines joined for printing, each escaped on its own."""
    return "\n".join(one_line(line) for line in lines)


def lists_text(outcomes: list[SourceOutcome]) -> str:
    """The ``imagesync lists`` table: one block per list, UNSIGNED lists marked on their first line."""
    if not outcomes:
        return "no lists configured (add them under lists: or to image_lists_file)"
    return _text(line for outcome in outcomes for line in _list_block(outcome))


def _list_block(outcome: SourceOutcome) -> list[str]:
    name = outcome.settings.name
    marker = "  UNSIGNED" if outcome.settings.signature == "none" else ""
    head = f"{name}: {outcome.status.upper()}{marker}  {redact.url(outcome.settings.url)}"
    if outcome.accepted is None:
        return [head, f"  error:   {outcome.error}"]
    return [head, *_accepted_lines(outcome.accepted)]


def accepted_text(accepted: Accepted) -> str:
    """Signer, list identifier, dates and image count of an accepted list, one escaped line each."""
    return _text(_accepted_lines(accepted))


def _accepted_lines(accepted: Accepted) -> list[str]:
    fields = accepted_fields(accepted)
    signer = fields["signer"]
    return _fields_text([
        ("signer", signer["dn"] if signer else "UNSIGNED (signature: none)"),
        ("ca", signer["ca"] if signer else "-"),
        ("list", fields["identifier"]),
        ("created", fields["created"]),
        ("expires", fields["expires"]),
        ("images", str(fields["images"])),
    ])


def signer_text(signer: Signer) -> str:
    """The signer and CA lines of the text reports, for a list that failed after its signature verified."""
    return _text(_fields_text([("signer", signer.dn), ("ca", signer.ca)]))


def _fields_text(lines: list[tuple[str, str]]) -> list[str]:
    return [f"  {key + ':':<9}{value}" for key, value in lines]


def action_entry(result: ActionResult) -> dict[str, Any]:
    """One ``actions[]`` entry of the JSON report."""
    action = result.action
    return {"target": action.target, "list": action.list_name, "image": action.identifier, "version": action.version,
            "title": action.title, "action": action.kind, "reason": action.reason, "status": result.status,
            "error": result.error, "target_id": result.target_id, **placement_fields(action.placement)}


def placement_fields(where: Placement | None) -> dict[str, Any]:
    """The fields of ``actions[]`` added to DESIGN §2's: where and as what the image lands (null: not known)."""
    where = where or Placement()
    return {"image_name": where.name, "vo": where.vo, "project": where.project, "format": where.format,
            "convert_from": where.convert_from, "size": where.size}


def placement_text(where: Placement | None) -> str:
    """``[name "...", vo V, project P, format F, 1.5 GiB]`` for a text report line; empty when nothing is known."""
    if where is None:
        return ""
    fmt = f"{where.convert_from} -> {where.format}" if where.convert_from else where.format
    parts = [f'name "{where.name}"' if where.name else None, f"vo {where.vo}" if where.vo else None,
             f"project {where.project}" if where.project else None, f"format {fmt}" if fmt else None,
             size_text(where.size) if where.size is not None else None]
    shown = [part for part in parts if part]
    return f"  [{', '.join(shown)}]" if shown else ""


def size_text(size: int) -> str:
    """Bytes in the largest binary unit that keeps a leading digit (``512 B``, ``64.0 KiB``, ``1.5 GiB``)."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def sync_json(result: SyncResult) -> dict[str, Any]:
    """The JSON report of DESIGN §2 (fields may be added, never renamed)."""
    return {
        "version": 1, "dry_run": result.dry_run, "started_at": iso(result.started_at),
        "finished_at": iso(result.finished_at), "exit_code": result.exit_code,
        "lists": [list_entry(o) for o in result.lists],
        "targets": [{"name": t.name, "status": t.status, "error": t.error} for t in result.targets],
        "actions": [action_entry(r) for r in result.results],
        "summary": _summary(result),
        "notes": list(result.plan.notes),
    }


def _summary(result: SyncResult) -> dict[str, int]:
    from imagesync.run.pipeline import summary  # noqa: PLC0415 - see TYPE_CHECKING above; a sync has it loaded already

    return summary(result)


def sync_text(result: SyncResult) -> str:
    """What a person reads after ``sync`` or ``plan``: failures and changes, then one summary line."""
    lines = ["DRY RUN: nothing was changed"] if result.dry_run else []
    for outcome in result.lists:
        count = outcome.accepted.image_count if outcome.accepted else 0
        unsigned = " UNSIGNED" if outcome.settings.signature == "none" else ""
        state = f"FAILED: {outcome.error}" if outcome.status == "failed" else f"{outcome.status}, {count} images"
        noun = "list" if outcome.kind == "hepix" else "registry"
        refused = f", {len(outcome.problems)} refused (see the notes)" if outcome.problems else ""
        lines.append(f"{noun} {outcome.settings.name}{unsigned}: {state}{refused}")
    lines += [f"target {t.name}: FAILED: {t.error}" for t in result.targets if t.status != "ok"]
    for item in result.results:
        if item.action.kind == "keep" and item.status != "failed":
            continue
        a = item.action
        status = f"FAILED: {item.error}" if item.status == "failed" else item.status
        lines.append(f"  {a.kind:<15} {a.target}: {a.list_name}/{a.identifier} {a.version} ({a.reason}) -> {status}"
                     + placement_text(a.placement))
    lines += [f"note: {note}" for note in result.plan.notes]
    counts = _summary(result)
    lines.append(f"{'planned' if result.dry_run else 'done'}: {counts['add']} add, {counts['update']} update, "
                 f"{counts['update-metadata']} update-metadata, {counts['retire']} retire, {counts['keep']} keep, "
                 f"{counts['failed']} failed; {counts['bytes_downloaded'] / 1024**2:.1f} MiB downloaded; "
                 + (f"{counts['bytes_pulled'] / 1024**2:.1f} MiB pulled by targets; " if counts["bytes_pulled"] else "")
                 + f"exit {result.exit_code}")
    return _text(lines)


def images_json(store: StateStore, list_name: str | None) -> dict[str, Any]:
    """``imagesync images --format json``: every known image version with its copies in the targets."""
    copies: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in store.target_images(list_name=list_name):
        copies.setdefault((record.list_name, record.identifier, record.version), []).append({
            "target": record.target, "target_id": record.target_id, "state": record.state.value,
            "error": record.error})
    entries = [{"list": r.list_name, "image": r.identifier, "version": r.version, "title": r.title,
                "sha512": r.sha512, "size": r.size, "last_seen": iso(r.last_seen),
                "targets": copies.get((r.list_name, r.identifier, r.version), [])}
               for r in store.images(list_name)]
    return {"images": entries}


def images_text(data: dict[str, Any]) -> str:
    if not data["images"]:
        return "no images known yet (run imagesync sync)"
    lines = []
    for entry in data["images"]:
        lines.append(f"{entry['list']}/{entry['image']} {entry['version']}  {entry['title'] or ''}  "
                     f"sha512={entry['sha512'][:16]}... size={entry['size']}")
        lines += [f"  {c['target']}: {c['state']} {c['target_id'] or '-'}" + (f"  ({c['error']})" if c["error"] else "")
                  for c in entry["targets"]]
    return _text(lines)


def verify_text(outcome: SourceOutcome, item: ListSettings) -> str:
    """``imagesync verify``: VERIFIED / ACCEPTED UNSIGNED with the list's fields, or NOT VERIFIED and why."""
    accepted = outcome.accepted
    if accepted is None:
        # The signature may have verified and a later check failed (endorser): say who signed.
        signer = f"\n{signer_text(outcome.signer)}" if outcome.signer is not None else ""
        return one_line(f"NOT VERIFIED  {outcome.error}") + signer
    head = "ACCEPTED UNSIGNED" if accepted.unsigned else "VERIFIED"
    return f"{head}  {one_line(redact.url(item.url))}\n{accepted_text(accepted)}"


def verify_json(outcome: SourceOutcome, item: ListSettings) -> dict[str, Any]:
    """``imagesync verify --format json`` (DESIGN §2)."""
    accepted = outcome.accepted
    fields = accepted_fields(accepted) if accepted is not None else None
    signer = accepted.signer if accepted is not None else outcome.signer
    return {
        "verified": accepted is not None, "unsigned": item.signature == "none", "source": redact.url(item.url),
        "error": outcome.error, "signer": {"dn": signer.dn, "ca": signer.ca} if signer is not None else None,
        "list": {key: fields[key] for key in ("identifier", "created", "expires", "images")} if fields else None,
    }
