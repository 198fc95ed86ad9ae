"""The settings of DESIGN §9 an operator observes a run with: ``metrics_file`` and ``log:``."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.errors import ConfigError


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "imagesync.yaml"
    path.write_text(text)
    return config.load(path)


def test_defaults_write_no_metrics_and_log_to_stderr_only(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.metrics_file is None
    assert settings.log == config.LogSettings(syslog=False, syslog_socket=Path("/dev/log"), syslog_facility="daemon")


def test_relative_paths_are_resolved_against_the_config_file(tmp_path: Path) -> None:
    settings = load(tmp_path, "metrics_file: textfile/imagesync.prom\n"
                              "log: {syslog: true, syslog_socket: run/log, syslog_facility: local3}\n")
    assert settings.metrics_file == tmp_path / "textfile" / "imagesync.prom"
    assert settings.log == config.LogSettings(syslog=True, syslog_socket=tmp_path / "run" / "log",
                                              syslog_facility="local3")


@pytest.mark.parametrize(("text", "message"), [
    ("log: {sylog: true}\n", "log.sylog: unknown key"),
    ("log: {syslog: maybe}\n", "log.syslog: expected true or false"),
    ("log: {syslog_facility: kern}\n", "log.syslog_facility: 'kern' is not allowed"),
    ("log: [syslog]\n", "log: expected a mapping"),
    ("metrics_file: [a, b]\n", "metrics_file: expected a string"),
])
def test_mistakes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(tmp_path, text)
