"""VO -> project mapping files: cloudkeeper-os mapping.json and the older voms.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagesync.config.mapping import ProjectRef, load
from imagesync.errors import ConfigError


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_cloudkeeper_and_voms_forms(tmp_path: Path) -> None:
    path = write(tmp_path, {"fedcloud.egi.eu": {"project": "fedcloud", "domain": "Default"},
                            "ops": {"project": "0123456789abcdef0123456789abcdef"},
                            "dteam": {"tenant": "DTEAM"}})
    assert load(path) == {"fedcloud.egi.eu": ProjectRef("fedcloud", "Default"),
                          "ops": ProjectRef("0123456789abcdef0123456789abcdef"),
                          "dteam": ProjectRef("DTEAM")}


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not valid JSON"),
    ([], "expected"),
    ({"vo": "project"}, "vo: expected an object"),
    ({"vo": {"domain": "Default"}}, r"vo: project \(or tenant\) must be a non-empty string"),
    ({"vo": {"project": "p", "domain": 3}}, "vo: domain must be a string"),
])
def test_errors_name_the_file_and_entry(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "none.json")
