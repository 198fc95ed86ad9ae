"""VO -> project mapping files: cloudkeeper-os mapping.json, the older voms.json and atrope's vo_map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagesync.config.mapping import ProjectRef, load, of_target
from imagesync.errors import ConfigError

ID = "0123456789abcdef0123456789abcdef"


def write(tmp_path: Path, data: object, name: str = "mapping.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("mapping.json",
     json.dumps({"fedcloud.egi.eu": {"project": "fedcloud", "domain": "Default"}, "ops": {"project": ID}}),
     {"fedcloud.egi.eu": ProjectRef("fedcloud", "Default"), "ops": ProjectRef(ID)}),
    ("voms.json", '{"dteam": {"tenant": "DTEAM"}}', {"dteam": ProjectRef("DTEAM")}),
    ("vo_map.json", json.dumps({"ops": {"project_id": ID}, "dteam": {"id": ID}, "biomed": {"name": "BIOMED"}}),
     {"ops": ProjectRef(ID), "dteam": ProjectRef(ID), "biomed": ProjectRef("BIOMED")}),
    ("vo_map.yaml", f"ops:\n  project_id: {ID}\nbiomed: {{name: BIOMED, domain: egi}}\n",
     {"ops": ProjectRef(ID), "biomed": ProjectRef("BIOMED", "egi")}),
    ("mapping.yaml", "# cloudkeeper's form, written as YAML\nops: {project: ops-project}\n",
     {"ops": ProjectRef("ops-project")}),
])
def test_every_form_json_or_yaml(tmp_path: Path, name: str, text: str, expected: dict[str, ProjectRef]) -> None:
    assert load(write(tmp_path, text, name)) == expected


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", r"not valid JSON \(.*\) nor YAML"),
    ("[]", "expected"),
    ({"vo": "project"}, "vo: expected an object with project"),
    ({"vo": {"domain": "Default"}}, "vo: project must be a non-empty string"),
    ({"vo": {"tenant": ""}}, "vo: tenant must be a non-empty string"),
    ("vo: {project_id: 12345}", "vo: project_id must be a non-empty string, quoted in YAML"),
    ({"vo": {"name": None}}, "vo: name must be a non-empty string"),
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


def test_a_mapping_given_in_place_is_used_without_reading_the_file(tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"  # a site file names the mapping; it is not a mapping file itself
    assert of_target({"ops": ProjectRef(ID)}, site_file) == {"ops": ProjectRef(ID)}
    assert of_target(None, write(tmp_path, {"ops": {"id": ID}})) == {"ops": ProjectRef(ID)}
