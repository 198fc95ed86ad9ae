"""Configuration mistakes an operator makes by hand: a misspelt key gets the nearest valid one, a secret file
others can read gets a warning naming the file and the fix."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.errors import ConfigError


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "imagesync.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(("data", "expected"), [
    ({"stat_dir": "/x"}, "stat_dir: unknown key (did you mean state_dir?)"),
    ({"State_Dir": "/x"}, "State_Dir: unknown key (did you mean state_dir?)"),
    ({"download": {"concurency": 2}}, "download.concurency: unknown key (did you mean concurrency?)"),
    ({"trust": {"ca_dri": "/x"}}, "trust.ca_dri: unknown key (did you mean ca_dir?)"),
    ({"lists": {"x": {"url": "https://h/l", "tokenfile": "t"}}},
     "lists.x.tokenfile: unknown key (did you mean token_file?)"),
    ({"targets": {"t": {"driver": "noop", "retire": {"keep_version": 1}}}},
     "targets.t.retire.keep_version: unknown key (did you mean keep_versions?)"),
    ({"targets": {"t": {"driver": "glance", "visibility": "private", "project_file": "m.json"}}},
     "targets.t.project_file: unknown key (did you mean projects_file?)"),
    # Nothing near: the few valid keys of that section instead of a wild guess.
    ({"trust": {"ca_path": 1}}, "trust.ca_path: unknown key (valid keys: allow_sha1, ca_dir, crl, gpg_home)"),
])
def test_unknown_key_suggests_the_nearest_valid_one(tmp_path: Path, data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.load(write(tmp_path, data))
    assert raised.value.one_line() == f"{tmp_path / 'imagesync.yaml'}: {expected}"


def secret(tmp_path: Path, name: str, mode: int) -> Path:
    path = tmp_path / name
    path.write_text("s3cr3t-value\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("mode", "who"), [(0o640, "group"), (0o604, "others"), (0o644, "group and others")])
def test_token_file_readable_by_others_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       mode: int, who: str) -> None:
    token = secret(tmp_path, "token", mode)
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, {"lists": {"x": {"url": "https://h/l", "token_file": "token"}}}))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"lists.x.token_file: secret file {token} is readable by {who} (mode {mode:04o}): "
                        f"chmod 600 {token}"]
    assert "s3cr3t" not in warnings[0]


def test_password_file_readable_by_others_is_warned_about_at_load(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    password = secret(tmp_path, "pw", 0o644)
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, {"targets": {"cloud": {
            "driver": "glance", "visibility": "private",
            "auth": {"auth_url": "http://127.0.0.1:1/v3", "username": "u", "password_file": "pw"}}}}))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert messages == [f"targets.cloud.auth.password_file: secret file {password} is readable by group and "
                        f"others (mode 0644): chmod 600 {password}"]


def test_private_secret_files_are_not_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret(tmp_path, "token", 0o600)
    secret(tmp_path, "pw", 0o400)
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, {
            "lists": {"x": {"url": "https://h/l", "token_file": "token"}},
            "targets": {"cloud": {"driver": "glance", "visibility": "private",
                                  "auth": {"auth_url": "http://127.0.0.1:1/v3", "password_file": "pw"}}}}))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []

