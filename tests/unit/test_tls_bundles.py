"""Which environment CA bundles a trust context loads on top of the system store (imagesync.net.tls.extra_bundles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.net.tls import extra_bundles


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """A system bundle, a site bundle and a symlink to the system one."""
    system, site = tmp_path / "ca-certificates.crt", tmp_path / "site.pem"
    system.write_text("system")
    site.write_text("site")
    (tmp_path / "link.crt").symlink_to(system)
    return {"system": str(system), "site": str(site), "link": str(tmp_path / "link.crt")}


@pytest.mark.parametrize(("environ", "default", "loaded"), [
    ({}, "system", []),
    ({"REQUESTS_CA_BUNDLE": "site"}, "system", [("REQUESTS_CA_BUNDLE", "site")]),
    # Debian-style containers point both at the system store: already loaded, nothing to add.
    ({"REQUESTS_CA_BUNDLE": "system", "CURL_CA_BUNDLE": "system"}, "system", []),
    ({"REQUESTS_CA_BUNDLE": "link"}, "system", []),
    ({"REQUESTS_CA_BUNDLE": "site", "CURL_CA_BUNDLE": "site"}, "system", [("REQUESTS_CA_BUNDLE", "site")]),
    ({"REQUESTS_CA_BUNDLE": "system", "CURL_CA_BUNDLE": "site"}, None,
     [("REQUESTS_CA_BUNDLE", "system"), ("CURL_CA_BUNDLE", "site")]),
    ({"CURL_CA_BUNDLE": ""}, "system", []),
])
def test_each_bundle_file_is_loaded_once_and_never_the_stores_own(
        files: dict[str, str], environ: dict[str, str], default: str | None, loaded: list[tuple[str, str]]) -> None:
    real_environ = {k: files.get(v, v) for k, v in environ.items()}
    expected = [(k, files[v]) for k, v in loaded]
    assert extra_bundles(real_environ, files[default] if default else None) == expected
