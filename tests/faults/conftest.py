"""Fixtures of the fault scenarios: the session's keys and a fresh scene (three servers) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.scene import FaultPki, Scene, make_pki


@pytest.fixture(scope="session")
def fault_pki() -> FaultPki:
    return make_pki()


@pytest.fixture
def scene(tmp_path: Path, fault_pki: FaultPki) -> Iterator[Scene]:
    built = Scene(tmp_path / "world", fault_pki)
    try:
        yield built
    finally:
        built.stop()
