"""Inline auth: each keystoneauth1 option may come from ``<option>_file`` or ``<option>_env``; secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.config.settings import TargetSettings
from imagesync.errors import ConfigError
from imagesync.targets.glance.auth import spec_for
from imagesync.util import redact

URL = "https://keystone.example.org:5000/v3"


@pytest.mark.parametrize(("auth_type", "option", "how"), [
    ("v3oidcclientcredentials", "client_secret", "file"),
    ("v3oidcclientcredentials", "client_secret", "env"),
    ("v3applicationcredential", "application_credential_secret", "file"),
    ("v3applicationcredential", "application_credential_secret", "env"),
    ("password", "password", "env"),
])
def test_secret_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth_type: str,
                                               option: str, how: str) -> None:
    secret = f"s3cret-{auth_type}-{how}"
    (tmp_path / "secret").write_text(secret + "\n")
    monkeypatch.setenv("IMAGESYNC_TEST_SECRET", secret)
    given = str(tmp_path / "secret") if how == "file" else "IMAGESYNC_TEST_SECRET"
    target = TargetSettings(name="site", driver="glance", auth={"auth_type": auth_type, "auth_url": URL,
                                                                f"{option}_{how}": given})
    spec = spec_for(target)
    assert spec.options[option] == secret and spec.auth_type == auth_type
    assert secret not in repr(spec) and secret not in repr(target)
    assert redact.text(f"got {secret}") == "got ***"
    assert redact.text("IMAGESYNC_TEST_SECRET") == "IMAGESYNC_TEST_SECRET"  # a variable's name is no secret


def test_an_unset_variable_or_unreadable_file_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGESYNC_TEST_UNSET", raising=False)
    auth = {"auth_type": "v3oidcclientcredentials", "client_secret_env": "IMAGESYNC_TEST_UNSET"}
    with pytest.raises(ConfigError, match=r"targets\.s\.auth\.client_secret_env: environment variable "
                       "IMAGESYNC_TEST_UNSET is not set or empty"):
        spec_for(TargetSettings(name="s", driver="glance", auth=auth))
    auth = {"auth_type": "v3applicationcredential", "application_credential_secret_file": str(tmp_path / "none")}
    with pytest.raises(ConfigError, match=r"targets\.s\.auth\.application_credential_secret_file: cannot read"):
        spec_for(TargetSettings(name="s", driver="glance", auth=auth))
