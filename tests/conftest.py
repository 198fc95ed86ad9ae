"""Session-wide fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.demo.world import DemoWorld, build
from tests.support.samples import TestPKI, build_test_pki

pytest_plugins = ["tests.devcloud.fixture", "tests.support.install", "tests.support.oci_registry"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The test PKI (CAs, signers, CRLs, CA directories), built once per session."""
    return build_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    """The demo world in ``tmp_path``: test PKI, a token-protected HTTPS list server, signed lists on demand."""
    with build(tmp_path) as w:
        yield w
