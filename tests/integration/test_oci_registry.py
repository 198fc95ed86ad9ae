"""The test registry itself (tests/support/oci_registry.py): notifications, clean stop, a readable missing binary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import oci_push
from tests.support.oci_registry import RegistryServer, RegistryUnavailable
from tests.support.receiver import Receiver
from tests.support.tls import make_server_pki


def test_notifications_are_posted_and_the_process_ends(tmp_path: Path) -> None:
    with Receiver() as receiver:
        server = RegistryServer(tmp_path, make_server_pki(), notifications_url=receiver.url("/events"))
        with server:
            pushed = oci_push.push_artifact(server, "imagesync/notified", "v1", b"x")
            process = server._process
            assert process is not None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not receiver.deliveries:
                time.sleep(0.1)
        assert process.poll() is not None  # stopped, nothing left running
    events = [e for d in receiver.deliveries for e in json.loads(d.body)["events"]]
    assert any(e["action"] == "push" and e["target"]["digest"] == pushed.digest for e in events)


def test_missing_binary_is_a_readable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RegistryUnavailable, match="docker-registry not found on PATH: apt-get install"):
        RegistryServer(tmp_path, make_server_pki()).__enter__()
