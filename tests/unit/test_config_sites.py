"""sites_dir / sites_file: fedcloud-catchall-operations site files become Glance targets, site_defaults merged in."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.config.mapping import ProjectRef
from imagesync.errors import EXIT_USAGE, ConfigError

OPS = "038db3eeca5c4960a443a89b92373cd2"
DTEAM = "2490c27604904357b9e50c5e77aaeedf"
# The shape of fedcloud-catchall-operations sites/*.yaml, keys imagesync does not use included.
BIFI = f"""---
gocdb: BIFI
endpoint: https://colossus.example.org:5000/v3
protocol: openid
images:
  sync: true
  formats:
    - qcow2
vos:
  - name: ops
    auth:
      project_id: {OPS}
  - name: dteam
    auth:
      project_id: {DTEAM}
      region: RegionTwo
"""
DEFAULTS = {"auth": {"auth_type": "v3oidcclientcredentials", "identity_provider": "egi.eu", "protocol": "oidc",
                     "client_id": "imagesync", "client_secret_env": "IMAGESYNC_TEST_SECRET"},
            "region": "RegionOne", "retire": {"mode": "delete", "delete_after": "1d"}, "visibility": "shared",
            "timeout": 120, "disk_formats": ["raw"], "ownership": "per-project", "upload": "web-download",
            "all_stores": True, "tag": "egi"}


def site(name: str, *, sync: bool = True, formats: list[str] | None = None, **extra: object) -> dict[str, object]:
    images: dict[str, object] = {"sync": sync} if formats is None else {"sync": sync, "formats": formats}
    return {"gocdb": name, "endpoint": f"https://{name.lower()}.example.org:5000/v3", "images": images,
            "vos": [{"name": "ops", "auth": {"project_id": OPS}}], **extra}


def write(tmp_path: Path, data: dict[str, object], sites: dict[str, object] | None = None) -> Path:
    if sites is not None:
        (tmp_path / "sites").mkdir(exist_ok=True)
        for name, content in sites.items():
            text = content if isinstance(content, str) else yaml.safe_dump(content)
            (tmp_path / "sites" / name).write_text(text)
        data = {"sites_dir": "sites", **data}
    path = tmp_path / "imagesync.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_syncing_site_becomes_a_glance_target_with_the_defaults_merged_in(tmp_path: Path) -> None:
    path = write(tmp_path, {"site_defaults": DEFAULTS}, {"BIFI.yaml": BIFI, "README.md": "not a site"})
    [target] = config.load(path).targets
    assert (target.name, target.driver, target.region, target.visibility, target.tag) == (
        "BIFI", "glance", "RegionOne", "shared", "egi")
    assert target.auth == {**DEFAULTS["auth"], "auth_url": "https://colossus.example.org:5000/v3",  # type: ignore[dict-item]
                           "protocol": "openid"}  # the site's Keystone protocol wins for OIDC logins
    assert target.disk_formats == ("qcow2",)  # the site's formats win over site_defaults
    assert target.projects == {"ops": ProjectRef(OPS), "dteam": ProjectRef(DTEAM)}
    assert target.projects_file == tmp_path / "sites" / "BIFI.yaml"
    assert (target.retire.mode, target.timeout, target.ownership, target.upload, target.all_stores) == (
        "delete", 120.0, "per-project", "web-download", True)


@pytest.mark.parametrize(("sites", "names", "check"), [
    ({"a.yaml": site("A"), "b.yml": site("B", sync=False), "c.yaml": site("C", images=None)}, ["A"],
     "only sync: true"),
    ({"a.yaml": site("A", formats=[]), "r.yaml": site("R", region="Two")}, ["A", "R"], "defaults"),
    ({}, [], "an empty directory"),
])
def test_which_sites_become_targets(tmp_path: Path, sites: dict[str, object], names: list[str], check: str) -> None:
    defaults = {"auth": {"auth_type": "password", "username": "u", "password": "p"}, "disk_formats": ["raw"]}
    targets = config.load(write(tmp_path, {"site_defaults": defaults}, sites)).targets
    assert [t.name for t in targets] == names, check
    for target in targets:
        assert target.disk_formats == ("raw",)  # no site formats: site_defaults'
        assert target.region == ("Two" if target.name == "R" else None)
        assert target.upload == "direct" and target.ownership == "shared"  # today's behaviour by default


def test_sites_file_lists_sites_beside_explicit_targets(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump([site("A"), site("B", sync=False)]))
    path = write(tmp_path, {"sites_file": "sites.yaml", "site_defaults": {"auth": {"token": "t0ken"}},
                            "targets": {"archive": {"driver": "directory", "path": "/srv"}}})
    assert [t.name for t in config.load(path).targets] == ["archive", "A"]


def test_a_vo_without_project_id_is_left_out_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    creodias = site("CREODIAS", auth="v3applicationcredential")
    creodias["vos"] = [{"name": "ops", "auth": {"region": "WAW4-1"}}, {"name": "dteam", "auth": {"project_id": DTEAM}}]
    path = write(tmp_path, {"site_defaults": {"auth": {"password": "p"}}}, {"c.yaml": creodias})
    [target] = config.load(path).targets
    assert target.projects == {"dteam": ProjectRef(DTEAM)}
    assert "site=CREODIAS vo=ops no auth.project_id" in caplog.text


@pytest.mark.parametrize(("sites", "data", "expected"), [
    ({"a.yaml": {"endpoint": "https://k/v3"}}, {}, "a.yaml: gocdb: required"),
    ({"a.yaml": {**site("A"), "endpoint": "keystone:5000"}}, {}, "a.yaml: endpoint: 'keystone:5000' is not a "
     "Keystone URL"),
    ({"a.yaml": {**site("A"), "endpoint": "https://u:p@k/v3"}}, {}, "a.yaml: endpoint: credentials do not belong"),
    ({"a.yaml": {**site("A"), "imgaes": {}}}, {}, "a.yaml: imgaes: unknown key (did you mean images?)"),
    ({"a.yaml": {**site("A"), "images": {"sync": "yes please"}}}, {}, "a.yaml: images.sync: expected true or false"),
    ({"a.yaml": {**site("A"), "images": {"sync": True, "format": ["raw"]}}}, {},
     "a.yaml: images.format: unknown key (did you mean formats?)"),
    ({"a.yaml": {**site("A"), "vos": {"ops": OPS}}}, {}, "a.yaml: vos: expected a list of mappings"),
    ({"a.yaml": {**site("A"), "vos": [{"auth": {"project_id": OPS}}]}}, {}, "a.yaml: vos[0].name: required"),
    ({"a.yaml": {**site("A"), "vos": [{"name": "o", "auth": {"project_id": 1}}, {"name": "o", "auth": {}}]}}, {},
     "a.yaml: vos[1].name: VO o is listed twice"),
    ({"a.yaml": site("bad name")}, {}, "a.yaml: gocdb: 'bad name' cannot name a target"),
    ({"a.yaml": "- not a mapping"}, {}, "a.yaml: top level: expected a mapping"),
    ({"a.yaml": "gocdb: [\n"}, {}, "a.yaml: invalid YAML at line"),
    ({"a.yaml": site("A"), "b.yaml": site("A")}, {}, "b.yaml: gocdb: site A is also described in"),
    ({"a.yaml": site("cloud")}, {"targets": {"cloud": {"driver": "noop"}}},
     "targets.cloud: site cloud of"),
    ({"a.yaml": site("A")}, {"site_defaults": {}}, "site_defaults.auth: required to log in to site A"),
    ({}, {"site_defaults": {"driver": "noop"}}, "site_defaults.driver: not a site default"),
    ({}, {"site_defaults": {"projects_file": "m.json"}}, "site_defaults.projects_file: not a site default"),
    ({}, {"site_defaults": {"auth": {"auth_url": "https://k/v3"}}}, "site_defaults.auth.auth_url: not a site"),
    ({}, {"site_defaults": {"upload": "ftp"}},
     "site_defaults.upload: 'ftp' is not allowed (allowed: direct, web-download"),
    ({}, {"site_defaults": {"ownership": "mine"}}, "site_defaults.ownership: 'mine' is not allowed"),
    ({}, {"site_defaults": {"stores": ["a"], "all_stores": True}}, "site_defaults.stores: give store ids or"),
    ({}, {"site_defaults": {"regoin": "x"}}, "site_defaults.regoin: unknown key (did you mean region?)"),
])
def test_malformed_sites_are_refused_naming_the_file(tmp_path: Path, sites: dict[str, object],
                                                     data: dict[str, object], expected: str) -> None:
    path = write(tmp_path, {"site_defaults": {"auth": {"password": "p"}}, **data}, sites)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert expected in str(info.value)
    assert info.value.exit_code == EXIT_USAGE and "\n" not in str(info.value)


@pytest.mark.parametrize(("data", "expected"), [
    ({"sites_dir": "missing"}, "sites_dir: "),
    ({"sites_file": "sites.yaml"}, "file not found"),
])
def test_missing_sites_dir_or_file(tmp_path: Path, data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config.load(write(tmp_path, data))


def test_sites_file_must_be_a_list(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(site("A")))
    with pytest.raises(ConfigError, match=r"sites\.yaml: expected a list of sites"):
        config.load(write(tmp_path, {"sites_file": "sites.yaml"}))


def test_targets_with_the_new_keys(tmp_path: Path) -> None:
    per_project = {"driver": "glance", "visibility": "private", "ownership": "per-project"}
    path = write(tmp_path, {"targets": {"t": per_project}})
    with pytest.raises(ConfigError, match=r"targets\.t\.projects_file: required with visibility shared or ownership"):
        config.load(path)
    path = write(tmp_path, {"targets": {"t": {"driver": "glance", "visibility": "private", "stores": ["fast"],
                                              "upload": "auto"}}})
    [target] = config.load(path).targets
    assert (target.stores, target.all_stores, target.upload, target.ownership) == (("fast",), False, "auto", "shared")
