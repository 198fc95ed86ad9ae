"""``listen:`` (DESIGN §9 plus the pacing keys): what is accepted, and each mistake named by its key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from imagesync.config.listen import ListenSettings
from imagesync.errors import ConfigError
from imagesync.util import redact
from tests.unit.test_config_events import load

SECRET = "9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60"


def secret_file(tmp_path: Path, text: str = SECRET) -> Path:
    path = tmp_path / "listen.secret"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_absent_means_not_configured(tmp_path: Path) -> None:
    assert load(tmp_path, "").listen == ListenSettings() and not ListenSettings().configured


def test_every_key(tmp_path: Path) -> None:
    secret_file(tmp_path)
    listen = load(tmp_path, "listen:\n  address: '::1'\n  port: 9000\n  secret_file: listen.secret\n"
                            "  tls_cert: c.pem\n  tls_key: k.pem\n  debounce: 30\n  max_wait: 5m\n"
                            "  max_body: 64KiB\n  queue_limit: 10\n").listen
    assert listen == ListenSettings(address="::1", port=9000, secret=SECRET, tls_cert=tmp_path / "c.pem",
                                    tls_key=tmp_path / "k.pem", debounce=timedelta(seconds=30),
                                    max_wait=timedelta(minutes=5), max_body=64 * 1024, queue_limit=10)
    assert SECRET not in repr(listen) and redact.text(SECRET) != SECRET


def test_zero_pauses_are_kept(tmp_path: Path) -> None:
    """Before: 0 was taken for "not given" and became the defaults (10 s and 120 s)."""
    secret_file(tmp_path)
    listen = load(tmp_path, "listen:\n  secret_file: listen.secret\n  debounce: 0\n  max_wait: 0\n").listen
    assert (listen.debounce, listen.max_wait) == (timedelta(0), timedelta(0))


@pytest.mark.parametrize(("body", "problem"), [
    ("  port: 8780\n", "listen.secret_file: required"),
    ("  secret_file: short.secret\n", "listen.secret_file: the secret is shorter than 16 characters"),
    ("  secret_file: listen.secret\n  tls_cert: c.pem\n", "listen.tls_key: tls_cert and tls_key go together"),
    ("  secret_file: listen.secret\n  debounce: 60\n  max_wait: 30\n", "listen.max_wait: shorter than debounce"),
    ("  secret_file: listen.secret\n  port: 70000\n", "listen.port: 70000 is out of range"),
    ("  secret_file: listen.secret\n  adress: 0.0.0.0\n", "listen.adress"),
])
def test_mistakes_name_their_key(tmp_path: Path, body: str, problem: str) -> None:
    secret_file(tmp_path)
    (tmp_path / "short.secret").write_text("tooshort")
    (tmp_path / "short.secret").chmod(0o600)
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        load(tmp_path, "listen:\n" + body)
