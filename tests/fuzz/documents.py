"""Structure-aware mutations of JSON (HEPiX lists) and YAML (configuration) documents.

Byte flips rarely get past a JSON or YAML parser; these operators keep the document parseable and put hostile
values (other types, huge numbers, odd dates and DNs, lone surrogates, deep nesting) where the schema reads.
"""

from __future__ import annotations

import json
import random
from typing import Any

import yaml

STRINGS = ("", " ", "0", "-1", "1e999", "NaN", "null", "\u202e", "\ud800", "\x00", "a" * 5000, "\u00e9\u0301",
           "2026-02-30T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "2026-11-01",
           "2026-11-01T12:00:00", "/CN=x", "CN=a,DC=b", "/=", "\\", "/DC=org/CN=a\\", "/CN=a+CN=b",
           "file:", "file:///etc/passwd", "http://[::1", "https://h/\x00", "https://", "ftp://h/x",
           "https://user:pw@h/x", "0" * 128, "F" * 128, "g" * 128, "~root", "~nobody-here/x", "/dev/null", ".", "/")
NUMBERS = (0, -1, 1, 2**31, 2**63, 10**30, 10**40, -(10**40), 1.5, -0.0, 1e308, 5e-324)


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value biased towards what breaks parsers."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice(NUMBERS)
    if kind in (3, 4, 5):
        return rng.choice(STRINGS)
    if kind == 6:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 7:
        return {rng.choice(STRINGS)[:20]: json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    nested: Any = rng.choice(STRINGS)
    for _ in range(rng.choice((10, 100, 500))):
        nested = [nested]
    return nested


def _slots(node: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a parsed document."""
    if isinstance(node, dict):
        for key in list(node):
            found.append((node, key))
            _slots(node[key], found)
    elif isinstance(node, list):
        for index in range(len(node)):
            found.append((node, index))
            _slots(node[index], found)
    return found


def tree_mutation(rng: random.Random, document: Any) -> str:
    """Change one slot of a parsed JSON/YAML document in place; returns a description."""
    slots = _slots(document, [])
    if not slots:
        return "empty document"
    container, key = rng.choice(slots)
    choice = rng.randrange(10)
    if choice < 5:
        container[key] = json_value(rng)
        return f"value of {key!r} replaced"
    if choice < 7:
        del container[key]
        return f"{key!r} deleted"
    if choice == 7 and isinstance(container, dict):
        container[rng.choice((str(key).upper(), f" {key}", f"{key}x", str(key)[:-1]))] = container.pop(key)
        return f"{key!r} renamed"
    if choice == 8 and isinstance(container[key], list | dict):
        container[key] = [] if isinstance(container[key], dict) else {}
        return f"{key!r} container type swapped"
    container[key] = str(container[key]) if not isinstance(container[key], str) else rng.choice(NUMBERS)
    return f"{key!r} type changed"


def json_mutation(rng: random.Random, content: bytes) -> tuple[bytes, str]:
    """Parse, change 1-3 slots, and write the JSON again (sometimes with a duplicated key added textually)."""
    document = json.loads(content)
    notes = [tree_mutation(rng, document) for _ in range(rng.randint(1, 3))]
    try:
        text = json.dumps(document, ensure_ascii=rng.random() < 0.5, indent=rng.choice((None, 2)))
    except RecursionError:
        return content, "too deep to write"
    if rng.random() < 0.1:
        brace = text.find("{", rng.randrange(len(text)))
        if brace >= 0:
            text = f'{text[:brace + 1]}"dc:identifier": "dup", {text[brace + 1:]}'
            notes.append("duplicate key")
    return text.encode("utf-8", "surrogatepass"), "; ".join(notes)


# libyaml's safe loader and dumper when PyYAML has them: the pure Python ones cost more than the code under test.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
YAML_SCALARS = ("off", "on", "yes", "no", "y", "n", "true", "~", "null", "", "0o777", "0x1f", "1e400", "9" * 400,
                "2001-02-30", "2026-11-01 12:00:00", "!!binary aGVsbG8=", "!!binary ###", "!!float nan", "*undefined",
                "&a x", "[", "{", "'", '"', "- x", "? x", "%TAG", "\t", "@x", "`x", "!!python/object:os.system",
                "10GiB", "10 XB", "1.5GiB", "7d", "99999999999999999999w", "-5", "3600", "/dev/null", "~nobody-x/y")


def yaml_mutation(rng: random.Random, content: bytes) -> tuple[bytes, str]:
    """Change the parsed config tree, or put a raw YAML 1.1 scalar after one of its keys."""
    if rng.random() < 0.5:
        lines = content.decode().splitlines(keepends=True)
        keyed = [i for i, line in enumerate(lines) if ":" in line]
        index = rng.choice(keyed)
        head = lines[index].split(":", 1)[0]
        scalar = rng.choice(YAML_SCALARS)
        lines[index] = f"{head}: {scalar}\n"
        return "".join(lines).encode(), f"line {index + 1} value {scalar!r}"
    document = yaml.load(content, Loader=_LOADER)  # a safe loader (the C one when there is one)
    notes = [tree_mutation(rng, document) for _ in range(rng.randint(1, 3))]
    try:
        text = yaml.dump(document, Dumper=_DUMPER, allow_unicode=rng.random() < 0.5)
    except (yaml.YAMLError, RecursionError):
        return content, "unrepresentable"
    return text.encode("utf-8", "surrogatepass"), "; ".join(notes)
