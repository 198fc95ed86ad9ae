"""``hooks:``, ``hook_timeout:`` and ``webhooks:`` (DESIGN §9): what is accepted, and each mistake named by its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.config.events import EVENTS, EventSettings, Hook, Webhook
from imagesync.errors import ConfigError
from imagesync.util import redact


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "imagesync.yaml"
    path.write_text(text)
    return config.load(path)


def test_defaults_have_no_hooks_and_a_30_second_timeout(tmp_path: Path) -> None:
    events = load(tmp_path, "").events
    assert events == EventSettings(hooks=(), hook_timeout=30.0, webhooks=())
    assert not events.configured


def test_hooks_are_argv_lists_per_event(tmp_path: Path) -> None:
    events = load(tmp_path, "hooks:\n"
                            "  image-added: [/usr/local/bin/notify, --channel, cloud, --retries, 3]\n"
                            "  run-finished: [logger, -t, imagesync]\n"
                            "  list-failed: [bin/alert]\n"
                            "hook_timeout: 5\n").events
    assert events.hook_for("image-added") == Hook("image-added", ("/usr/local/bin/notify", "--channel", "cloud",
                                                                  "--retries", "3"))
    # A bare name is found in PATH when it runs; a relative path means the config's directory.
    assert events.hook_for("run-finished") == Hook("run-finished", ("logger", "-t", "imagesync"))
    assert events.hook_for("list-failed") == Hook("list-failed", (str(tmp_path / "bin" / "alert"),))
    assert events.hook_for("image-retired") is None
    assert events.hook_timeout == 5.0
    assert events.configured


def test_a_shell_string_is_refused_with_the_list_form_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "hooks:\n  image-added: /usr/local/bin/notify --channel cloud\n")
    message = caught.value.one_line()
    assert "hooks.image-added: expected a list of arguments such as [/usr/local/bin/notify, ...]" in message
    assert "without a shell" in message


@pytest.mark.parametrize(("text", "message"), [
    ("hooks: {image-deleted: [x]}\n", "hooks.image-deleted: unknown key"),
    ("hooks: {image-added: []}\n", "hooks.image-added: expected a non-empty list of arguments"),
    ("hooks: {image-added: [notify, {a: b}]}\n", "hooks.image-added: expected a non-empty list of arguments"),
    ("hooks: {image-added: [notify, true]}\n", "hooks.image-added: expected a non-empty list of arguments"),
    ("hooks: [image-added]\n", "hooks: expected a mapping"),
    ("hook_timeout: 0\n", "hook_timeout: 0 is out of range"),
    ("hook_timeout: 30s\n", "hook_timeout: expected a whole number"),
    ("webhooks: {url: https://x.example}\n", "webhooks: expected a list of mappings"),
    ("webhooks: [https://x.example]\n", r"webhooks\[0\]: expected a mapping"),
    ("webhooks: [{events: [run-finished]}]\n", r"webhooks\[0\].url: required"),
    ("webhooks: [{url: ftp://x.example/h}]\n", r"webhooks\[0\].url: expected an http:// or https:// URL"),
    ("webhooks: [{url: 'https://x.example:99999/h'}]\n", r"webhooks\[0\].url: not a valid URL"),
    ("webhooks: [{url: https://x.example, events: [run-done]}]\n", r"webhooks\[0\].events: 'run-done' is not an"),
    ("webhooks: [{url: https://x.example, secret: abc}]\n", r"webhooks\[0\].secret: unknown key"),
    ("webhooks: [{url: https://x.example, retries: 11}]\n", r"webhooks\[0\].retries: 11 is out of range"),
    ("webhooks: [{url: https://x.example, secret_file: nothere}]\n", r"webhooks\[0\].secret_file: cannot read"),
])
def test_mistakes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


def test_webhooks_with_and_without_secret(tmp_path: Path) -> None:
    (tmp_path / "webhook.secret").write_text("s3cret-hmac-key\n")
    events = load(tmp_path, "webhooks:\n"
                            "  - {url: 'https://hooks.example.org/imagesync', secret_file: webhook.secret,\n"
                            "     events: [list-failed, run-finished], timeout: 5, retries: 1}\n"
                            "  - {url: 'http://127.0.0.1:8080/in'}\n").events
    first, second = events.webhooks
    assert first == Webhook(url="https://hooks.example.org/imagesync", secret="s3cret-hmac-key",
                            events=("list-failed", "run-finished"), timeout=5.0, retries=1)
    assert second == Webhook(url="http://127.0.0.1:8080/in", secret=None, events=EVENTS, timeout=10.0, retries=3)
    # The key is a secret: masked wherever it could be printed, never in a repr.
    assert "s3cret-hmac-key" not in repr(events)
    assert redact.text("key s3cret-hmac-key") == "key ***"
    assert re.search(r"\bsecret=", repr(first)) is None
