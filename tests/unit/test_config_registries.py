"""``registries:``: every valid form, every refusal naming file + key, secrets read from each source and masked."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.config.registries import RegistrySettings
from imagesync.errors import EXIT_USAGE, ConfigError
from imagesync.util import redact

README = Path(__file__).resolve().parents[2] / "README.md"


def write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "imagesync.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "cosign.pub"
    path.write_text("-----BEGIN PUBLIC KEY-----\n")
    return path


def harbor(**extra: object) -> dict[str, object]:
    """A valid Harbor registry verified with cosign.pub (relative to the config file)."""
    return {"url": "https://registry.egi.eu", "harbor_project": "egi_vm_images", "signature": "cosign",
            "cosign_keys": ["cosign.pub"], **extra}


def plain(**extra: object) -> dict[str, object]:
    """A valid registry with explicit repositories, taken unsigned."""
    return {"url": "https://r.example.org:5000", "repositories": ["vm/ubuntu", "vm/alma"], "signature": "none",
            **extra}


def load_one(tmp_path: Path, section: dict[str, object]) -> RegistrySettings:
    settings = config.load(write(tmp_path, {"registries": {"reg": section}}))
    assert len(settings.registries) == 1
    return settings.registries[0]


@pytest.mark.parametrize(("section", "expected"), [
    (harbor(), {"url": "https://registry.egi.eu", "harbor_project": "egi_vm_images", "repositories": (),
                "signature": "cosign", "vos": ("egi_vm_images",), "tag_pattern": None, "enabled": True,
                "username": None, "kind": "oci"}),
    (harbor(url="https://registry.egi.eu/"), {"url": "https://registry.egi.eu"}),
    (harbor(vo="fedcloud.egi.eu"), {"vos": ("fedcloud.egi.eu",)}),
    (harbor(vos=["a.eu", "b.eu"]), {"vos": ("a.eu", "b.eu")}),
    (harbor(tag_pattern="^[^-]*$", images=["egi_vm_images/ubuntu:22.04"], required_annotation="eu.egi.cloud.tag"),
     {"tag_pattern": "^[^-]*$", "images": ("egi_vm_images/ubuntu:22.04",),
      "required_annotation": "eu.egi.cloud.tag"}),
    (plain(), {"url": "https://r.example.org:5000", "repositories": ("vm/ubuntu", "vm/alma"),
               "harbor_project": None, "signature": "none", "vos": (), "cosign_keys": ()}),
    (plain(images=["vm/alma:9.4", "vm/ubuntu:24.04"]), {"images": ("vm/alma:9.4", "vm/ubuntu:24.04")}),
    (plain(username="anon-reader"), {"username": "anon-reader", "password": None, "token": None}),
    (plain(username="robot$sync", password="inline-registry-pw-1"),
     {"username": "robot$sync", "password": "inline-registry-pw-1"}),
    (plain(token="inline-registry-token-1"), {"token": "inline-registry-token-1", "username": None}),
    (plain(prefix="REG ", enabled=False), {"prefix": "REG ", "enabled": False}),
])
def test_valid_forms(tmp_path: Path, key: Path, section: dict[str, object], expected: dict[str, object]) -> None:
    registry = load_one(tmp_path, section)
    assert registry.name == "reg"
    for name, value in expected.items():
        assert getattr(registry, name) == value, name


def test_cosign_keys_are_resolved_against_the_config_directory(tmp_path: Path, key: Path) -> None:
    registry = load_one(tmp_path, harbor(cosign_keys=["cosign.pub", str(key)]))
    assert registry.cosign_keys == (key, key)


def test_empty_config_has_no_registries(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, {})).registries == ()


def test_registries_sit_beside_lists_and_targets(tmp_path: Path, key: Path) -> None:
    settings = config.load(write(tmp_path, {
        "lists": {"fedcloud": {"url": "https://h/l"}},
        "registries": {"egi": harbor(), "site": plain()},
        "targets": {"t": {"driver": "noop"}}}))
    assert [item.name for item in settings.registries] == ["egi", "site"]
    assert [item.name for item in settings.lists] == ["fedcloud"]


@pytest.mark.parametrize(("section", "expected"), [
    ({"url": "https://r", "repositories": ["a"]},
     "registries.reg.signature: required: write signature: cosign (with cosign_keys) or signature: none"),
    ({**plain(), "signature": None}, "registries.reg.signature: required: write signature: cosign"),
    (plain(signature=False), "registries.reg.signature: expected a string"),
    (plain(signature="gpg"), "registries.reg.signature: 'gpg' is not allowed (allowed: cosign, none)"),
    (harbor(cosign_keys=[]), "registries.reg.cosign_keys: required with signature: cosign"),
    ({**harbor(), "cosign_keys": None}, "registries.reg.cosign_keys: required with signature: cosign"),
    (harbor(cosign_keys=["missing.pub"]), "registries.reg.cosign_keys: cannot read"),
    (harbor(cosign_keys=["."]), "registries.reg.cosign_keys: cannot read"),
    (plain(cosign_keys=["cosign.pub"]), "registries.reg.cosign_keys: not used with signature: none"),
    (harbor(repositories=["vm/ubuntu"]), "registries.reg.harbor_project: give harbor_project or repositories, not"),
    ({"url": "https://r", "signature": "none"}, "registries.reg.repositories: required"),
    (plain(repositories=[]), "registries.reg.repositories: required"),
    (harbor(harbor_project="EGI VM"), "registries.reg.harbor_project: 'EGI VM' is not a Harbor project name"),
    (plain(repositories=["VM/Ubuntu"]), "registries.reg.repositories: 'VM/Ubuntu' is not a repository name"),
    (harbor(tag_pattern="^[^-*$"), "registries.reg.tag_pattern: '^[^-*$' is not a valid regular expression"),
    (plain(images=["vm/ubuntu"]), "registries.reg.images: 'vm/ubuntu' is not <repository>:<tag>"),
    (plain(images=["vm/ubuntu:"]), "registries.reg.images: 'vm/ubuntu:' is not <repository>:<tag>"),
    (plain(images=["vm/ubuntu:a b"]), "registries.reg.images: 'vm/ubuntu:a b' is not <repository>:<tag>"),
    (plain(images=["vm/debian:12"]), "registries.reg.images: 'vm/debian:12': vm/debian is not one of the"),
    (harbor(images=["ubuntu:22.04"]), "registries.reg.images: 'ubuntu:22.04' is not in Harbor project egi_vm_images"),
    (harbor(tag_pattern="^[^-]*$", images=["egi_vm_images/ubuntu:22.04-rc1"]),
     "registries.reg.images: 'egi_vm_images/ubuntu:22.04-rc1': tag 22.04-rc1 does not match tag_pattern"),
    (plain(images="vm/ubuntu:24.04"), "registries.reg.images: expected a list of strings"),
    (plain(url="http://r.example.org"), "registries.reg.url: 'http://r.example.org' is not a registry base URL: "
                                        "expected https://host[:port] (https only"),
    (plain(url="https://r.example.org/v2/vm"), "registries.reg.url: 'https://r.example.org/v2/vm' is not a registry"),
    (plain(url="https://r.example.org?x=1"), "registries.reg.url: 'https://r.example.org?x=1' is not a registry"),
    (plain(url="https:///nohost"), "registries.reg.url: 'https:///nohost' is not a registry base URL"),
    (plain(url="https://r.example.org:http"), "registries.reg.url: 'https://r.example.org:http' is not a valid URL"),
    (plain(url="https://u:pw-in-url-77@r.example.org"), "registries.reg.url: credentials do not belong in the URL"),
    ({"repositories": ["a"], "signature": "none"}, "registries.reg.url: required"),
    (harbor(vo="a.eu", vos=["b.eu"]), "registries.reg.vos: give vo (one) or vos (a list), not both"),
    (harbor(vos=["a.eu", " "]), "registries.reg.vos: a VO name cannot be empty"),
    (harbor(vo=""), "registries.reg.vo: a VO name cannot be empty"),
    (plain(username="u", password="registry-pw-2", token="registry-token-2"),
     "registries.reg.token: give a password or a token, not both"),
    (plain(password="registry-pw-3"), "registries.reg.username: required with a password"),
    (plain(username="u", password="registry-pw-4", password_env="X"),
     "registries.reg.password: give the password only once (found: password, password_env)"),
    (plain(token_file="tok", token_env="X"), "registries.reg.token_file: give the token only once"),
    (plain(token_env="IMAGESYNC_TEST_UNSET"),
     "registries.reg.token_env: environment variable IMAGESYNC_TEST_UNSET is not set or empty"),
    (plain(username="u", password_file="/nonexistent/pw"), "registries.reg.password_file: cannot read"),
    (plain(password=""), "registries.reg.password: empty"),
    (plain(required_annotation=""), "registries.reg.required_annotation: empty"),
    (plain(enabled="yes please"), "registries.reg.enabled: expected true or false"),
    (plain(tag_patern="^v"), "registries.reg.tag_patern: unknown key (did you mean tag_pattern?)"),
    ({**plain(), "signatur": "none", "signature": None},
     "registries.reg.signatur: unknown key (did you mean signature?)"),
    ({"url": "https://r", "repositories": ["a"], "signatur": "none"},
     "registries.reg.signatur: unknown key (did you mean signature?)"),
    (plain(cosign_key=["cosign.pub"]), "registries.reg.cosign_key: unknown key (did you mean cosign_keys?)"),
])
def test_errors_name_file_key_and_what_to_do(tmp_path: Path, key: Path, section: dict[str, object],
                                             expected: str) -> None:
    path = write(tmp_path, {"registries": {"reg": section}})
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert expected in message
    assert message.startswith(f"{path}: ")
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in message
    assert "pw-in-url-77" not in message


@pytest.mark.parametrize(("data", "expected"), [
    ({"registries": {"bad name!": plain()}}, "registries.bad name!: names may use letters"),
    ({"registries": [plain()]}, "registries: expected a mapping"),
    ({"registries": {"reg": "https://r"}}, "registries.reg: expected a mapping"),
])
def test_names_and_shape(tmp_path: Path, data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config.load(write(tmp_path, data))


def test_a_registry_named_like_a_list_is_refused_naming_both(tmp_path: Path) -> None:
    path = write(tmp_path, {"lists": {"egi": {"url": "https://lists.example.org/egi.list"}},
                            "registries": {"egi": plain()}})
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert ("registries.egi: the name egi is also the name of list egi (https://lists.example.org/egi.list)"
            in str(info.value))
    assert "rename the registry" in str(info.value)


def test_a_registry_named_like_a_list_of_the_lists_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "image-lists.conf").write_text(
        "https://TOKEN-in-lists-file-9:x-oauth-basic@vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list\n")
    path = write(tmp_path, {"image_lists_file": "image-lists.conf", "registries": {"fedcloud.egi.eu": plain()}})
    with pytest.raises(ConfigError, match=r"registries\.fedcloud\.egi\.eu: .* also the name of list fedcloud") as info:
        config.load(path)
    assert "TOKEN-in-lists-file-9" not in str(info.value)


def test_password_file_is_read_masked_and_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "registry-password"
    secret.write_text("file-registry-pw-5150\n")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        settings = config.load(write(tmp_path, {"registries": {"reg": plain(username="robot",
                                                                            password_file="registry-password")}}))
    assert settings.registries[0].password == "file-registry-pw-5150"
    assert "file-registry-pw-5150" not in repr(settings)
    assert redact.text("401 for robot:file-registry-pw-5150") == "401 for robot:***"
    assert "registries.reg.password_file: secret file" in caplog.text and "chmod 600" in caplog.text


def test_private_secret_file_gets_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "tok").write_text("file-registry-token-6262")
    (tmp_path / "tok").chmod(0o600)
    with caplog.at_level(logging.WARNING):
        settings = config.load(write(tmp_path, {"registries": {"reg": plain(token_file="tok")}}))
    assert settings.registries[0].token == "file-registry-token-6262"
    assert caplog.text == ""


def test_password_env_and_token_env_are_read_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGESYNC_TEST_REGISTRY_PW", "env-registry-pw-7331")
    monkeypatch.setenv("IMAGESYNC_TEST_REGISTRY_TOKEN", "env-registry-token-4242")
    settings = config.load(write(tmp_path, {"registries": {
        "a": plain(username="robot", password_env="IMAGESYNC_TEST_REGISTRY_PW"),
        "b": plain(token_env="IMAGESYNC_TEST_REGISTRY_TOKEN")}}))
    a, b = settings.registries
    assert (a.password, b.token) == ("env-registry-pw-7331", "env-registry-token-4242")
    shown = repr(settings)
    assert "env-registry-pw-7331" not in shown and "env-registry-token-4242" not in shown
    assert redact.text("env-registry-pw-7331 / env-registry-token-4242") == "*** / ***"


def test_the_readme_example_is_valid(tmp_path: Path, key: Path) -> None:
    section = README.read_text(encoding="utf-8").split("### OCI registries\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    data = yaml.safe_load(block.group(1))
    # The example's files live under /etc/imagesync; point them at files of this test.
    (tmp_path / "registry-password").write_text("readme-registry-pw-1")
    data["registries"]["egi"]["cosign_keys"] = [str(key)]
    data["registries"]["site"]["password_file"] = "registry-password"
    egi, site = config.load(write(tmp_path, data)).registries
    assert (egi.harbor_project, egi.signature, egi.vos) == ("egi_vm_images", "cosign", ("egi_vm_images",))
    assert (site.repositories, site.signature, site.vos) == (("vm/ubuntu", "vm/almalinux"), "none",
                                                             ("fedcloud.egi.eu",))
