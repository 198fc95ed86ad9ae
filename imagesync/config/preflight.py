"""Settings that only the machine can judge: directories imagesync must write, files it must read.

Found before a run starts, these are configuration errors (exit 2) naming the path and the fix, not an
"unexpected PermissionError" halfway through; ``imagesync check`` reports the same problems as findings.
Nothing here leaves a file behind: writability is probed with an anonymous temporary file.
"""

from __future__ import annotations

import logging
import os
import pwd
import tempfile
from collections.abc import Iterable
from pathlib import Path

from imagesync.config import mapping
from imagesync.config.mapping import ProjectRef
from imagesync.config.settings import Settings, TargetSettings
from imagesync.errors import ConfigError

log = logging.getLogger(__name__)
MAPPING_EXAMPLE = '{"<VO>": {"project": "<project id or name>", "domain": "<domain name, optional>"}}'


def require(settings: Settings, targets: Iterable[TargetSettings], *, dry_run: bool) -> None:
    """Raise the first ConfigError of :func:`problems`. A dry run writes neither directory, so for it their
    problems are warnings (the real run would stop on them) and only the mapping files must be right."""
    dirs, files = directory_problems(settings), [p for t in targets if (p := mapping_problem(t)) is not None]
    if dry_run:
        for problem in dirs:
            log.warning("%s (sync would stop here with exit 2)", problem.one_line())
        dirs = []
    for problem in [*dirs, *files]:
        raise problem


def directory_problems(settings: Settings) -> list[ConfigError]:
    """state_dir and cache_dir: each must be, or be creatable as, a directory this user can write."""
    found = [writable_dir(settings.state_dir, "state_dir", settings.source, mode="0700"),
             writable_dir(settings.cache_dir, "cache_dir", settings.source, mode="0750")]
    return [problem for problem in found if problem is not None]


def writable_dir(path: Path, key: str, source: Path | None, *, mode: str) -> ConfigError | None:
    """None when ``path`` is a directory this user can create files in, or could be created as one."""
    existing = path
    # os.path answers False where pathlib raises (a parent this user may not search).
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        return ConfigError(f"{key}: {existing} is not a directory", subject=_where(source),
                           hint=f"point {key} at a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        user = _user()
        if existing == path:
            return ConfigError(f"{key}: {path} is not writable by user {user}: {exc.strerror}",
                               subject=_where(source), hint=f"give it to that user: chown -R {user} {path}")
        return ConfigError(f"{key}: {path} cannot be created by user {user} in {existing}: {exc.strerror}",
                           subject=_where(source), hint=f"create it: install -d -o {user} -m {mode} {path}")
    return None


def mapping_problem(target: TargetSettings) -> ConfigError | None:
    """None unless ``target`` shares by VO and its projects_file is missing or malformed."""
    try:
        load_mapping(target)
    except ConfigError as exc:
        return exc
    return None


def load_mapping(target: TargetSettings) -> dict[str, ProjectRef] | None:
    """The VO -> project mapping of a target that shares by VO, None for one that does not. Raises ConfigError
    naming the target's projects_file key, the file and what to write in it."""
    if target.visibility != "shared" or target.projects_file is None:
        return None
    if target.projects is not None:
        return dict(target.projects)  # from its site file, checked as it was read (config.sites)
    path = target.projects_file
    key = f"targets.{target.name}.projects_file"
    if not path.is_file():
        problem = "does not exist" if not path.exists() else "is not a file"
        raise ConfigError(f"{key}: {path} {problem}", hint=f"write the VO -> project mapping there: {MAPPING_EXAMPLE}")
    try:
        return mapping.load(path)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc.one_line()}", hint=exc.hint or f"expected {MAPPING_EXAMPLE}") from None


def _where(source: Path | None) -> str | None:
    return str(source) if source is not None else None


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
