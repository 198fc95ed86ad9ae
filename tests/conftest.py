"""Session-wide fixtures shared by unit and integration tests."""

from __future__ import annotations

import pytest

from tests.support.samples import TestPKI, build_test_pki

pytest_plugins = ["tests.devcloud.fixture", "tests.support.install"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The test PKI (CAs, signers, CRLs, CA directories), built once per session."""
    return build_test_pki(tmp_path_factory.mktemp("pki"))
