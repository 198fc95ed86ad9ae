"""The documentation of hooks and webhooks holds: the README's configuration and the commented example in
etc/imagesync.yaml load as written, and the README's receiver check accepts what imagesync signs and nothing else."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from imagesync.config import settings as config
from imagesync.config.events import EVENTS
from imagesync.notify.webhooks import signature

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Hooks and webhooks\n")
    return text[start:text.index("\n## ", start + 1)]


def block(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", section(), flags=re.DOTALL)
    return str(found)


def test_the_configuration_shown_loads(tmp_path: Path) -> None:
    data = yaml.safe_load(block("yaml"))
    secret = tmp_path / "webhook.secret"
    secret.write_text("a-secret-of-the-operator\n")
    assert data["webhooks"][0].pop("secret_file") == "/etc/imagesync/webhook.secret"
    data["webhooks"][0]["secret_file"] = str(secret)
    events = config.from_mapping(data, source=tmp_path / "imagesync.yaml").events
    assert [h.event for h in events.hooks] == ["list-failed", "image-added", "run-finished"]
    assert events.hook_for("image-added") is not None
    assert events.hook_timeout == 30.0
    (webhook,) = events.webhooks
    assert (webhook.secret, webhook.events, webhook.retries) == ("a-secret-of-the-operator",
                                                                 ("list-failed", "run-finished"), 3)
    assert set(EVENTS) <= set(section().split("`"))  # every event is named in the text


def test_the_receivers_check_accepts_our_signature_only() -> None:
    namespace: dict[str, object] = {}
    exec(compile(block("python"), "README.md", "exec"), namespace)  # our own README
    verified = namespace["verified"]
    assert callable(verified)
    check: Callable[[bytes, str, bytes], bool] = verified
    body = b'{"kind": "run-finished"}'
    assert check(body, signature("k3y", body), b"k3y")
    assert not check(body + b" ", signature("k3y", body), b"k3y")
    assert not check(body, signature("other", body), b"k3y")


def test_the_commented_example_config_loads_once_uncommented(tmp_path: Path) -> None:
    lines, inside = [], False
    for line in (ROOT / "etc" / "imagesync.yaml").read_text().splitlines():
        inside = line.startswith("# hooks:") or (inside and line.startswith("#"))
        if inside:
            lines.append(line.removeprefix("# "))
    data = yaml.safe_load("\n".join(lines))
    secret = tmp_path / "webhook.secret"
    secret.write_text("s\n")
    data["webhooks"][0]["secret_file"] = str(secret)
    events = config.from_mapping(data, source=tmp_path / "imagesync.yaml").events
    assert [h.event for h in events.hooks] == list(EVENTS)
    assert len(events.webhooks) == 1 and events.hook_timeout == 30.0
