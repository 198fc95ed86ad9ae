"""VO -> project mappings (DESIGN §3): what a ``projects_file`` holds, or a site file's ``vos:`` (config.sites).

A ``projects_file`` may be written in any of the forms the tools imagesync replaces kept, JSON or YAML, and the
form is told per entry by its keys, so an operator can point imagesync at the file they already have:

- cloudkeeper-os ``mapping.json``: ``{"<VO>": {"project": "<id or name>", "domain": "<domain name>"}}``
- the older ``voms.json``: ``{"<VO>": {"tenant": "<name>"}}``
- atrope's ``vo_map``: ``{"<VO>": {"project_id": "<id>"}}``, or ``{"id": ...}`` / ``{"name": ...}``

Every form becomes the same ``{VO: ProjectRef}``; the driver resolves names and ids alike (targets.glance.projects).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagesync.errors import ConfigError

# The keys naming the project, in the order they are looked for: cloudkeeper-os, voms.json, then atrope's vo_map.
PROJECT_KEYS = ("project", "tenant", "project_id", "id", "name")


@dataclass(frozen=True)
class ProjectRef:
    """A project by id, or by name within an optional domain (resolved by the driver)."""

    project: str
    domain: str | None = None


def load(path: Path) -> dict[str, ProjectRef]:
    """Parse a mapping file (JSON or YAML, any form above). Raises ConfigError naming the file and the bad entry."""
    data = _parse(path)
    if not isinstance(data, dict) or not all(isinstance(vo, str) for vo in data):
        raise ConfigError('expected {"<VO>": {"project": "<id or name>", "domain": "<name>"}}', subject=str(path))
    return {vo: _entry(vo, value, path) for vo, value in data.items()}


def of_target(given: Mapping[str, ProjectRef] | None, path: Path) -> dict[str, ProjectRef]:
    """A target's mapping: ``given`` when its site file gave it (config.sites), else the file at ``path``.
    Raises ConfigError as :func:`load`."""
    return dict(given) if given is not None else load(path)


def _parse(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", subject=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", subject=str(path)) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        json_error = exc
    # Not JSON: atrope's vo_map is usually YAML. JSON's own message is kept, as most mapping files are JSON.
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError):
        raise ConfigError(f"not valid JSON ({json_error}) nor YAML", subject=str(path)) from None


def _entry(vo: str, value: object, path: Path) -> ProjectRef:
    if not isinstance(value, dict):
        raise ConfigError(f"{vo}: expected an object with project (or tenant, project_id, id, name)",
                          subject=str(path))
    key = next((k for k in PROJECT_KEYS if k in value), "project")
    project = value.get(key)
    domain = value.get("domain")
    if not isinstance(project, str) or not project:
        # A YAML id of digits only reads as a number, which would lose leading zeros: it must be quoted.
        raise ConfigError(f"{vo}: {key} must be a non-empty string, quoted in YAML (the project is named by "
                          "project, tenant, project_id, id or name)", subject=str(path))
    if domain is not None and not isinstance(domain, str):
        raise ConfigError(f"{vo}: domain must be a string", subject=str(path))
    return ProjectRef(project=project, domain=domain or None)
