"""Configuration files as operators and editors write them: YAML 1.1 surprises, odd bytes, odd paths.

Each of these reached the operator as an 'unexpected error' (most were found by tests/fuzz): the loader must
end in Settings or a one-line ConfigError naming the file, and exit 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.config.read import parse_duration, parse_size
from imagesync.errors import EXIT_USAGE, ConfigError
from imagesync.util import redact


def load_text(tmp_path: Path, text: str, lists: bytes | None = None) -> config.Settings:
    path = tmp_path / "imagesync.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    if lists is not None:
        (tmp_path / "image-lists.conf").write_bytes(lists)
    return config.load(path)


def refused(tmp_path: Path, text: str, lists: bytes | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, lists)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE and "\n" not in message
    assert str(tmp_path) in message
    return message


@pytest.mark.parametrize(("text", "expected"), [
    ("created: 2001-02-30\n", "invalid YAML"),  # PyYAML's date constructor raises ValueError
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML"),  # nesting beyond the recursion limit
    ('state_dir: "\\ud800"\n', "not valid text"),  # a YAML escape of a lone surrogate
    ('lists:\n  x: {url: "https://h/l", token_file: "t\\0k"}\n', "not valid text"),  # NUL: no path, URL or token
])
def test_yaml_the_parser_accepts_but_python_cannot_use(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_image_lists_file_that_is_not_utf8(tmp_path: Path) -> None:
    message = refused(tmp_path, "image_lists_file: image-lists.conf\n", b"https://h/\xff\xfe.list\n")
    assert "image-lists.conf" in message and "UTF-8" in message


def test_token_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "tok").write_bytes(b"\xff\xfe token")
    message = refused(tmp_path, "lists:\n  x: {url: 'https://h/l', token_file: tok}\n")
    assert "lists.x.token_file" in message and "UTF-8" in message


def test_image_lists_file_url_with_a_bad_port(tmp_path: Path) -> None:
    message = refused(tmp_path, "image_lists_file: image-lists.conf\n",
                      b"https://TOKEN42:x-oauth-basic@host:notaport/image.list\n")
    assert "line 1: not a valid URL" in message and "TOKEN42" not in message


@pytest.mark.parametrize("key", ["state_dir", "trust:\n  ca_dir"])
def test_home_of_an_unknown_user(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, f"{key}: ~no-such-user-imagesync/x\n")
    assert "~no-such-user-imagesync" in message


def test_secret_file_in_the_home_of_an_unknown_user(tmp_path: Path) -> None:
    text = "lists:\n  x: {url: 'https://h/l', token_file: '~no-such-user-imagesync/tok'}\n"
    assert "lists.x.token_file" in refused(tmp_path, text)


def test_auth_file_in_the_home_of_an_unknown_user(tmp_path: Path) -> None:
    text = ("targets:\n  t:\n    driver: glance\n    visibility: private\n"
            "    auth: {password_file: '~no-such-user-imagesync/pw'}\n")
    assert "targets.t.auth.password_file" in refused(tmp_path, text)


@pytest.mark.parametrize("text", ["9" * 400, "9" * 400 + "GiB", "1" + "0" * 310 + "TiB"])
def test_sizes_too_big_for_a_float_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text", ["99999999999999999999w", str(10**18) + "d"])
def test_durations_beyond_timedelta_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_url_with_a_bad_port_is_redacted_not_raised() -> None:
    assert redact.url("https://TOKEN42@host:notaport/x") == "https://***@host:notaport/x"


@pytest.mark.parametrize("written", ["off", "Off", "OFF", "'off'", "false", "no"])
def test_crl_off_however_yaml_reads_it(tmp_path: Path, written: str) -> None:
    assert load_text(tmp_path, f"trust:\n  crl: {written}\n").trust.crl == "off"


@pytest.mark.parametrize("written", ["on", "yes", "true"])
def test_crl_on_is_ambiguous_and_says_why(tmp_path: Path, written: str) -> None:
    message = refused(tmp_path, f"trust:\n  crl: {written}\n")
    assert "YAML reads it as true" in message and "allowed: off, if_present, require" in message
