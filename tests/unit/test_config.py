"""Configuration: defaults, every validation error names file + key + what is allowed, tokens from every source."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.errors import EXIT_USAGE, ConfigError
from imagesync.util import redact


def write(tmp_path: Path, data: object, lists: str | None = None) -> Path:
    path = tmp_path / "imagesync.yaml"
    if lists is not None:
        (tmp_path / "image-lists.conf").write_text(lists)
        assert isinstance(data, dict)
        data = {**data, "image_lists_file": "image-lists.conf"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "imagesync.yaml"
    path.write_text("")
    settings = config.load(path)
    assert settings.state_dir == Path("/var/lib/imagesync")
    assert settings.trust.crl == "if_present"
    assert settings.download.min_free_space == 10 * 1024**3
    assert settings.download.max_image_size == 200 * 1024**3
    assert settings.lists == () and settings.targets == ()


def test_full_example(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("s3cr3t-file-token\n")
    path = write(tmp_path, {
        "state_dir": "state", "cache_dir": "/var/cache/x",
        "trust": {"ca_dir": "certs", "crl": "require"},
        "download": {"concurrency": 4, "min_free_space": "1GiB", "timeout": 30},
        "lists": {"fedcloud": {
            "url": "https://vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list", "token_file": "tok",
            "endorser": {"dn": "/DC=EU/CN=appdb.egi.eu", "ca": "/DC=ORG/CN=CA"}, "images": ["a", "b"],
            "prefix": "EGI ", "on_expiry": "keep"}},
        "targets": {"mycloud": {"driver": "glance", "region": "RegionOne", "projects_file": "mapping.json",
                                "auth": {"auth_type": "password", "password_file": "secrets/pw"},
                                "retire": {"mode": "hide", "keep_versions": 1, "delete_after": "12h"}},
                    "archive": {"driver": "directory", "path": "/srv/images"}},
    })
    s = config.load(path)
    assert s.state_dir == tmp_path / "state"
    assert s.cache_dir == Path("/var/cache/x")
    assert s.trust.ca_dir == tmp_path / "certs" and s.trust.crl == "require"
    assert s.download.concurrency == 4 and s.download.min_free_space == 1024**3 and s.download.timeout == 30
    fed = s.lists[0]
    assert fed.name == "fedcloud" and fed.token == "s3cr3t-file-token" and fed.images == ("a", "b")
    assert fed.endorser == config.Endorser(dn="/DC=EU/CN=appdb.egi.eu", ca="/DC=ORG/CN=CA")
    assert fed.on_expiry == "keep" and fed.prefix == "EGI "
    assert "s3cr3t" not in repr(s)
    cloud, archive = s.targets
    assert cloud.retire == config.RetirePolicy(mode="hide", keep_versions=1, delete_after=timedelta(hours=12))
    assert archive.path == Path("/srv/images")
    assert cloud.projects_file == tmp_path / "mapping.json"
    assert cloud.auth["password_file"] == str(tmp_path / "secrets/pw")


def test_target_timeout_bounds_every_cloud_call(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, {"targets": {"slow": {"driver": "noop", "timeout": 1200},
                                                        "plain": {"driver": "noop"}}}))
    assert [t.timeout for t in settings.targets] == [1200, 600]


@pytest.mark.parametrize(("data", "expected"), [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"trust": {"crl": "sometimes"}}, "trust.crl: 'sometimes' is not allowed (allowed: off, if_present, require)"),
    ({"trust": {"ca_path": "/x"}}, "trust.ca_path: unknown key"),
    ({"download": {"concurency": 2}}, "download.concurency: unknown key"),
    ({"download": {"concurrency": 0}}, "download.concurrency: 0 is out of range"),
    ({"download": {"concurrency": "two"}}, "download.concurrency: expected a whole number"),
    ({"download": {"min_free_space": "lots"}}, "download.min_free_space: 'lots' is not a size"),
    ({"lists": {"x": {}}}, "lists.x.url: required"),
    ({"lists": {"x": {"url": "https://h/l", "signature": "pgp"}}},
     "lists.x.signature: 'pgp' is not allowed"),
    ({"lists": {"x": {"url": "https://h/l", "signature": "gpg"}}}, "lists.x.gpg_fingerprints: required"),
    ({"lists": {"x": {"url": "https://h/l", "token": "a1b2", "token_env": "T"}}}, "give the token only once"),
    ({"lists": {"x": {"url": "https://h/l", "token_env": "IMAGESYNC_TEST_UNSET"}}},
     "lists.x.token_env: environment variable IMAGESYNC_TEST_UNSET is not set"),
    ({"lists": {"x": {"url": "https://h/l", "token_file": "/nonexistent/tok"}}}, "lists.x.token_file: cannot read"),
    ({"lists": {"x": {"url": "https://h/l", "images": "a"}}}, "lists.x.images: expected a list of strings"),
    ({"lists": {"x": {"url": "https://h/l", "endorser": {"dn": "/CN=a"}}}}, "lists.x.endorser.ca: required"),
    ({"lists": {"x": {"url": "https://h/l", "enabled": "yes please"}}},
     "lists.x.enabled: expected true or false"),
    ({"lists": {"bad name!": {"url": "https://h/l"}}}, "lists.bad name!: names may use"),
    ({"lists": ["https://h/l"]}, "lists: expected a mapping"),
    ({"targets": {"t": {}}}, "targets.t.driver: required"),
    ({"targets": {"t": {"driver": "ftp"}}},
     "targets.t.driver: 'ftp' is not allowed (allowed: glance, noop, directory)"),
    ({"targets": {"t": {"driver": "directory"}}}, "targets.t.path: required for the directory driver"),
    ({"targets": {"t": {"driver": "glance"}}}, "targets.t.projects_file: required with visibility shared"),
    ({"targets": {"t": {"driver": "noop", "retire": {"mode": "burn"}}}},
     "targets.t.retire.mode: 'burn' is not allowed"),
    ({"targets": {"t": {"driver": "noop", "retire": {"delete_after": "soon"}}}}, "is not a duration"),
    ({"targets": {"t": {"driver": "noop", "visibility": "everyone"}}}, "targets.t.visibility: 'everyone'"),
    ({"targets": {"t": {"driver": "noop", "timeout": 0}}}, "targets.t.timeout: 0 is out of range"),
])
def test_errors_name_file_key_and_allowed(tmp_path: Path, data: dict[str, object], expected: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)


def test_missing_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lists: [\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        config.load(bad)


def test_token_env_and_inline_are_registered_for_redaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGESYNC_TEST_TOKEN", "env-token-123456")
    s = config.load(write(tmp_path, {"lists": {
        "a": {"url": "https://h/a", "token_env": "IMAGESYNC_TEST_TOKEN"},
        "b": {"url": "https://h/b", "token": "inline-token-98765"}}}))
    assert [item.token for item in s.lists] == ["env-token-123456", "inline-token-98765"]
    assert redact.text("x env-token-123456 y inline-token-98765") == "x *** y ***"


def test_image_lists_file_userinfo_token_and_names(tmp_path: Path) -> None:
    lists = """
# EGI lists
https://APPDBTOKEN42:x-oauth-basic@vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list
https://vmcaster.appdb.egi.eu/store/vappliance/egi.ubuntu.20.04/image.list   # public
https://lists.example.org/x/image.list
https://lists.example.org/x/image.list
https://vmcaster.appdb.egi.eu/store/vo/dteam/image.list
"""
    s = config.load(write(tmp_path, {"lists": {"dteam": {"url": "https://vmcaster.appdb.egi.eu/store/vo/dteam/image.list",
                                                            "prefix": "D "}}}, lists))
    names = [item.name for item in s.lists]
    assert names == ["dteam", "fedcloud.egi.eu", "egi.ubuntu.20.04", "lists.example.org-x-image.list"]
    fed = s.lists[1]
    assert fed.token == "APPDBTOKEN42"
    assert fed.url == "https://vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list"
    assert s.lists[0].prefix == "D "
    assert "APPDBTOKEN42" not in redact.url("https://APPDBTOKEN42:x-oauth-basic@h/p")
    assert "APPDBTOKEN42" not in redact.text("GET https://h/p failed for APPDBTOKEN42")


def test_image_lists_file_bad_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"image-lists.conf: line 2: expected an http"):
        config.load(write(tmp_path, {}, "https://ok/list\nftp://nope/list\n"))


def test_explicit_missing_lists_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"image_lists_file": "missing.conf"})
    with pytest.raises(ConfigError, match="cannot read image lists file"):
        config.load(path)


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGESYNC_CONFIG", raising=False)
    assert config.config_path(None) == config.DEFAULT_CONFIG
    monkeypatch.setenv("IMAGESYNC_CONFIG", "/tmp/x.yaml")
    assert config.config_path(None) == Path("/tmp/x.yaml")
    assert config.config_path("/y.yaml") == Path("/y.yaml")


@pytest.mark.parametrize(("text", "size"), [("10GiB", 10 * 1024**3), ("500MB", 500 * 1000**2), (1024, 1024),
                                            ("1.5KiB", 1536), ("7", 7)])
def test_sizes(text: object, size: int) -> None:
    from imagesync.config.read import parse_size
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-1", "ten", "5 parsecs", True])
def test_bad_sizes(text: object) -> None:
    from imagesync.config.read import parse_size
    with pytest.raises(ValueError):
        parse_size(text)


def test_download_allowed_networks(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, {})).download.allowed_networks == ()
    settings = config.load(write(tmp_path, {"download": {"allowed_networks": ["127.0.0.0/8", " fd00::/8"]}}))
    assert [str(n) for n in settings.download.allowed_networks] == ["127.0.0.0/8", "fd00::/8"]


@pytest.mark.parametrize(("value", "expected"), [
    (["10.0.0.1/8"], "download.allowed_networks: 10.0.0.1/8 has host bits set"),
    (["127.0.0.0/8", "intranet"], "download.allowed_networks: 'intranet' is not an IP network in CIDR notation"),
    ("127.0.0.0/8", "download.allowed_networks: expected a list of strings"),
])
def test_download_allowed_networks_errors(tmp_path: Path, value: object, expected: str) -> None:
    path = write(tmp_path, {"download": {"allowed_networks": value}})
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert expected in str(info.value) and str(path) in str(info.value)
