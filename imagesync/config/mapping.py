"""VO -> project mapping files: cloudkeeper-os ``mapping.json`` and the older ``voms.json`` form (DESIGN §3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imagesync.errors import ConfigError


@dataclass(frozen=True)
class ProjectRef:
    """A project by id, or by name within an optional domain (resolved by the driver)."""

    project: str
    domain: str | None = None


def load(path: Path) -> dict[str, ProjectRef]:
    """Parse a mapping file. Raises ConfigError naming the file and the bad entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", subject=str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", subject=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError('expected {"<VO>": {"project": "<id or name>", "domain": "<name>"}}', subject=str(path))
    return {vo: _entry(vo, value, path) for vo, value in data.items()}


def _entry(vo: str, value: object, path: Path) -> ProjectRef:
    if not isinstance(value, dict):
        raise ConfigError(f"{vo}: expected an object with project (or tenant)", subject=str(path))
    project = value.get("project", value.get("tenant"))
    domain = value.get("domain")
    if not isinstance(project, str) or not project:
        raise ConfigError(f"{vo}: project (or tenant) must be a non-empty string", subject=str(path))
    if domain is not None and not isinstance(domain, str):
        raise ConfigError(f"{vo}: domain must be a string", subject=str(path))
    return ProjectRef(project=project, domain=domain or None)
