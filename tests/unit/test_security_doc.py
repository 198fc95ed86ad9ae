"""SECURITY.md maps every threat to the test that proves its defence: every test it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# `integration/test_x.py::test_name`, `crash/`, `unit/test_y.py` ... as SECURITY.md writes them (relative to tests/).
REFERENCE = re.compile(r"`((?:unit|integration|crash|faults|fuzz|smoke)/[\w/.]*)(?:::(\w+))?`")


def test_every_test_security_md_names_exists() -> None:
    text = (REPO / "SECURITY.md").read_text(encoding="utf-8")
    found = REFERENCE.findall(text)
    assert len(found) > 40
    missing = []
    for path, name in found:
        target = REPO / "tests" / path
        if not target.exists():
            missing.append(path)
        elif name and not re.search(rf"^def {name}\b", target.read_text(encoding="utf-8"), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []
