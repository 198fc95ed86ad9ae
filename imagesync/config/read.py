"""Typed, strict reading of one YAML mapping: every accessor consumes its key, ``finish`` rejects the rest.

Kept apart from config.py so the schema there reads as a table of keys and defaults.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import yaml

from imagesync.config.units import parse_duration, parse_size
from imagesync.errors import ConfigError, brief
from imagesync.util import redact

log = logging.getLogger(__name__)
_BOOLEAN_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


def read_yaml(path: Path) -> object:
    """The parsed YAML document in ``path`` (None when empty). Raises ConfigError naming ``path``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", subject=str(path), hint="pass --config or set IMAGESYNC_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", subject=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}", subject=str(path)) from None
    except (ValueError, RecursionError) as exc:
        # PyYAML's constructors raise plain ValueErrors (a date like 2001-02-30); deep nesting exhausts the stack.
        raise ConfigError(f"invalid YAML: {brief(exc, 80)}", subject=str(path)) from None
    if not _plain_text(raw):
        raise ConfigError("a string is not valid text (NUL or a lone surrogate escape)", subject=str(path))
    return raw


def _plain_text(node: object) -> bool:
    # YAML escapes can make NULs and lone surrogates, which no path, URL, token or log line can carry.
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in node
    if isinstance(node, dict):
        return all(_plain_text(key) and _plain_text(value) for key, value in node.items())
    if isinstance(node, list):
        return all(_plain_text(item) for item in node)
    return True


def unknown_key_hint(key: str, valid: set[str]) -> str:
    """``did you mean <nearest>?`` for a misspelt key, else the valid keys (there are few per section)."""
    if not valid:
        return "nothing is allowed here"
    # Case differences are the commonest slip (State_Dir): compare lowercased, answer in the real spelling.
    lowered = {name.lower(): name for name in valid}
    near = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    if near:
        return f"did you mean {lowered[near[0]]}?"
    return f"valid keys: {', '.join(sorted(valid))}"


def warn_if_exposed(path: Path, key: str) -> None:
    """Log one warning when the secret file ``path`` (setting ``key``) is readable by group or others.

    Only a warning: the run is not the place to judge a site's groups, but a secret any local user can read is
    how tokens leak. Raises nothing (a file that cannot be examined is reported when it is read).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        who = " and ".join(name for bit, name in ((stat.S_IRGRP, "group"), (stat.S_IROTH, "others")) if mode & bit)
        log.warning("%s: secret file %s is readable by %s (mode %04o): chmod 600 %s", key, path, who, mode, path)


class Section:
    """One mapping of the config file at a dotted key path."""

    def __init__(self, data: Mapping[str, object], *, source: Path, key: str, name: str = "") -> None:
        self._data = dict(data)
        self._source = source
        self._key = key
        self.name = name
        # Every key some accessor asked for: the valid keys of this section, for "did you mean" on unknown ones.
        self._valid: set[str] = set()

    @classmethod
    def of(cls, raw: object, *, source: Path, key: str, name: str = "") -> Section:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
            where = key or "top level"
            raise ConfigError(f"{where}: expected a mapping of names to values", subject=str(source))
        return cls(raw, source=source, key=key, name=name)

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self._dotted(key)}: {problem}", subject=str(self._source))

    def _dotted(self, key: str) -> str:
        return f"{self._key}.{key}" if self._key else key

    def has(self, key: str) -> bool:
        self._valid.add(key)
        return key in self._data

    def _take(self, key: str, required: bool) -> object:
        self._valid.add(key)
        if key not in self._data:
            if required:
                self.fail(key, "required")
            return None
        return self._data.pop(key)

    def finish(self) -> None:
        """Raise ConfigError for the first key nobody asked for, suggesting the nearest valid one."""
        for key in self._data:
            self.fail(key, f"unknown key ({unknown_key_hint(key, self._valid)})")

    def section(self, key: str) -> Section:
        return Section.of(self._take(key, False), source=self._source, key=self._dotted(key))

    def named_sections(self, key: str) -> Iterator[Section]:
        outer = self.section(key)
        for name in list(outer._data):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                outer.fail(name, "names may use letters, digits, '_', '.', '-'")
            yield Section.of(outer._data.pop(name), source=self._source, key=outer._dotted(name), name=name)

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self._take(key, required)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.fail(key, "expected a string")
        return str(value)

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self._take(key, False)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "expected a list of strings")
        return tuple(value)

    def argv(self, key: str) -> tuple[str, ...]:
        """A command as a list of arguments (numbers taken as text); a string is refused: no shell ever runs it."""
        value = self._take(key, False)
        if isinstance(value, str):
            self.fail(key, f"expected a list of arguments such as [{value.split()[0] if value.split() else 'cmd'}, "
                      "...], not a string: commands are run without a shell")
        if not isinstance(value, list) or not value or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            self.fail(key, "expected a non-empty list of arguments, the command first")
        return tuple(str(v) for v in value)

    def section_list(self, key: str) -> Iterator[Section]:
        """Each mapping of a list of mappings, keyed ``key[0]``, ``key[1]``, ..."""
        value = self._take(key, False)
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(key, "expected a list of mappings")
        for index, item in enumerate(value):
            yield Section.of(item, source=self._source, key=f"{self._dotted(key)}[{index}]")

    def string_map(self, key: str) -> dict[str, str]:
        sec = self.section(key)
        result: dict[str, str] = {}
        for name in list(sec._data):
            result[name] = sec.string(name) or ""
        redact.register_options(result)
        return result

    def options_with_files(self, key: str, base: Path) -> dict[str, str]:
        """A string map whose ``*_file`` values are secret files: resolved relative to ``base`` (cron runs from
        another directory) and warned about now when others may read them, though they are read later."""
        options = self.string_map(key)
        for name, value in options.items():
            if name.endswith("_file"):
                options[name] = str(self.resolve(f"{key}.{name}", value, base))
                warn_if_exposed(Path(options[name]), self._dotted(f"{key}.{name}"))
        return options

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None, *, required: bool = False) -> str:
        value = self._take(key, required)
        if value is None and default is not None:
            return default
        if isinstance(value, bool):
            # YAML 1.1 reads a bare off/no/on/yes as a boolean: take it as the choice spelled that way (crl: off).
            spelled = next((choice for choice in allowed if choice in _BOOLEAN_WORDS[value]), None)
            if spelled is None:
                self.fail(key, f"YAML reads it as {str(value).lower()}, which is none of the choices "
                          f"(allowed: {', '.join(allowed)})")
            return spelled
        if value not in allowed:
            self.fail(key, f"{value!r} is not allowed (allowed: {', '.join(allowed)})")
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._take(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, "expected true or false")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self._take(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "expected a whole number")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            self.fail(key, f"{value} is out of range (at least {minimum}{upper})")
        return value

    def size(self, key: str, default: int) -> int:
        value = self._take(key, False)
        if value is None:
            return default
        try:
            return parse_size(value)
        except ValueError:
            self.fail(key, f"{value!r} is not a size (e.g. 10GiB, 500MB, or bytes)")

    def duration(self, key: str, default: timedelta | None) -> timedelta | None:
        self._valid.add(key)
        if key in self._data and self._data[key] is None:
            self._data.pop(key)
            return None
        value = self._take(key, False)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(key, f"{value!r} is not a duration (e.g. 7d, 12h, 30m, or seconds; null for never)")

    def path(self, key: str, base: Path, default: Path) -> Path:
        return self.optional_path(key, base) or default

    def optional_path(self, key: str, base: Path) -> Path | None:
        value = self.string(key)
        return self.resolve(key, value, base) if value else None

    def resolve(self, key: str, value: str, base: Path) -> Path:
        """``value`` (the setting ``key``) as a path: ``~`` expanded, relative to ``base``. Raises ConfigError."""
        try:
            return base / Path(value).expanduser()
        except RuntimeError:  # what pathlib raises for ~user when there is no such user
            self.fail(key, f"{value!r}: no such user, so no home directory")

    def secret_file(self, key: str, base: Path) -> str:
        path = self.resolve(key, self.string(key) or "", base)
        warn_if_exposed(path, self._dotted(key))
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.fail(key, f"cannot read {path}: {exc.strerror}")
        except UnicodeDecodeError as exc:
            self.fail(key, f"{path} is not UTF-8 text (byte {exc.start})")
        if not secret:
            self.fail(key, f"{path} is empty")
        return secret

    def secret_env(self, key: str) -> str:
        variable = self.string(key) or ""
        secret = os.environ.get(variable, "")
        if not secret:
            self.fail(key, f"environment variable {variable} is not set or empty")
        return secret


# parse_size and parse_duration live in imagesync.config.units; still importable from here, their first home.
__all__ = ["Section", "parse_duration", "parse_size", "read_yaml"]
