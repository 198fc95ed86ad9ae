"""Rendering of results for people (text) and programs (JSON, DESIGN §2). No decisions are made here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imagesync import redact
from imagesync.accept import AcceptedList
from imagesync.pipeline import ListOutcome


def iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def list_entry(outcome: ListOutcome) -> dict[str, Any]:
    """One ``lists[]`` entry of the JSON report."""
    entry: dict[str, Any] = {
        "name": outcome.settings.name, "url": redact.url(outcome.settings.url), "status": outcome.status,
        "error": outcome.error, "signature": outcome.settings.signature,
        "unsigned": outcome.settings.signature == "none",
        "identifier": None, "created": None, "expires": None, "signer": None, "images": None,
    }
    if outcome.accepted is not None:
        entry.update(accepted_fields(outcome.accepted))
    return entry


def accepted_fields(accepted: AcceptedList) -> dict[str, Any]:
    lst = accepted.image_list
    signer = accepted.signer
    return {
        "identifier": lst.identifier, "created": iso(lst.created), "expires": iso(lst.expires),
        "signer": {"dn": signer.dn, "ca": signer.ca} if signer is not None else None,
        "images": len(lst.images),
    }


def lists_text(outcomes: list[ListOutcome]) -> str:
    """The ``imagesync lists`` table: one block per list, UNSIGNED lists marked on their first line."""
    if not outcomes:
        return "no lists configured (add them under lists: or to image_lists_file)"
    return "\n".join(_list_block(outcome) for outcome in outcomes)


def _list_block(outcome: ListOutcome) -> str:
    name = outcome.settings.name
    marker = "  UNSIGNED" if outcome.settings.signature == "none" else ""
    head = f"{name}: {outcome.status.upper()}{marker}  {redact.url(outcome.settings.url)}"
    if outcome.accepted is None:
        return f"{head}\n  error:   {outcome.error}"
    return head + "\n" + accepted_text(outcome.accepted)


def accepted_text(accepted: AcceptedList) -> str:
    fields = accepted_fields(accepted)
    signer = fields["signer"]
    lines = [
        ("signer", signer["dn"] if signer else "UNSIGNED (signature: none)"),
        ("ca", signer["ca"] if signer else "-"),
        ("list", fields["identifier"]),
        ("created", fields["created"]),
        ("expires", fields["expires"]),
        ("images", str(fields["images"])),
    ]
    return "\n".join(f"  {key + ':':<9}{value}" for key, value in lines)
