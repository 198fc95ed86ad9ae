"""Webhook deliveries (imagesync.notify.webhooks) to a real receiver on 127.0.0.1: the body and its HMAC, retries with
backoff on 5xx, no retry on 4xx, a receiver that is down, a silent one, and HTTPS trusted through trust.ca_dir."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.config.events import Webhook
from imagesync.demo import pki
from imagesync.notify import events
from imagesync.notify.events import Event
from imagesync.notify.webhooks import Sender, display_name, signature
from imagesync.run.pipeline import SyncResult
from tests.support.receiver import Receiver

SECRET = "hmac-key-for-tests"


def event() -> Event:
    now = datetime.now(UTC)
    return events.run_finished(SyncResult(dry_run=False, started_at=now, finished_at=now), exit_code=1, now=now)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def sender(url: str, *, ca_dir: Path | None = None, sleeps: Sleeps | None = None, **kw: object) -> Sender:
    return Sender(Webhook(url=url, **kw), ca_dir=ca_dir, sleep=sleeps if sleeps is not None else Sleeps())  # type: ignore[arg-type]


def warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [(r.getMessage(), getattr(r, "imagesync_fields", {})) for r in caplog.records
            if r.name == "imagesync.notify.webhooks" and r.levelno >= logging.WARNING]


def test_the_document_is_posted_and_signed() -> None:
    sent = event()
    with Receiver() as receiver:
        assert sender(receiver.url(), secret=SECRET).send(sent) is True
    (delivery,) = receiver.deliveries
    assert delivery.path == "/hooks/imagesync/T0K3N-in-path"
    assert json.loads(delivery.body) == sent.document
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Imagesync-Event"] == "run-finished"
    assert delivery.headers["X-Imagesync-Delivery"] == sent.document["id"]
    assert delivery.headers["X-Imagesync-Signature"] == signature(SECRET, delivery.body)
    assert delivery.signed_with(SECRET) and not delivery.signed_with("another key")


def test_without_a_secret_nothing_is_signed() -> None:
    with Receiver() as receiver:
        assert sender(receiver.url()).send(event()) is True
    assert "X-Imagesync-Signature" not in receiver.deliveries[0].headers


def test_5xx_is_retried_with_backoff_and_the_same_delivery(caplog: pytest.LogCaptureFixture) -> None:
    sleeps = Sleeps()
    with Receiver(503, 502) as receiver:
        assert sender(receiver.url(), sleeps=sleeps, secret=SECRET).send(event()) is True
    first, second, third = receiver.deliveries
    assert first.body == second.body == third.body
    assert first.headers["X-Imagesync-Delivery"] == third.headers["X-Imagesync-Delivery"]
    assert third.signed_with(SECRET)
    assert sleeps == [1.0, 2.0]
    assert warnings(caplog) == []


def test_a_receiver_that_keeps_failing_is_given_up_and_skipped_for_the_rest_of_the_run(
        caplog: pytest.LogCaptureFixture) -> None:
    sleeps = Sleeps()
    with Receiver(503, 503, 503, 503) as receiver:
        webhook = sender(receiver.url(), sleeps=sleeps, retries=2)
        assert webhook.send(event()) is False
        assert webhook.send(event()) is False  # not even tried: one round of retries per run is enough
        webhook.close()
    assert len(receiver.deliveries) == 3
    assert sleeps == [1.0, 2.0]
    name = f"http://127.0.0.1:{receiver.url().split(':')[2].split('/')[0]}"
    assert warnings(caplog) == [
        ("webhook failed", {"webhook": name, "event": "run-finished", "result": "failed",
                            "error": "HTTP 503; gave up after 3 attempt(s)"}),
        ("webhook down: later events not sent", {"webhook": name, "result": "skipped",
                                                 "error": "1 later event(s) of this run not sent"}),
    ]


def test_4xx_is_final(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver(404) as receiver:
        webhook = sender(receiver.url())
        assert webhook.send(event()) is False
        assert webhook.send(event()) is True  # a refusal is about that event, the receiver is not down
    assert len(receiver.deliveries) == 2
    ((message, fields),) = warnings(caplog)
    assert (message, fields["error"]) == ("webhook refused the event", "HTTP 404")


def test_a_refused_connection_is_retried_and_logged_without_the_url_path(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    sleeps = Sleeps()
    assert sender(f"http://127.0.0.1:{port}/hooks/T0K3N-in-path?key=QUERYSECRET", sleeps=sleeps,
                  retries=1).send(event()) is False
    assert sleeps == [1.0]
    ((message, fields),) = warnings(caplog)
    assert message == "webhook failed"
    assert fields["webhook"] == f"http://127.0.0.1:{port}"
    assert str(fields["error"]).startswith("cannot connect: ")
    assert "T0K3N" not in caplog.text and "QUERYSECRET" not in caplog.text


def test_a_silent_receiver_times_out(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections queue in the kernel; nobody ever answers
        webhook = sender(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=1, retries=0)
        assert webhook.send(event()) is False
    ((_, fields),) = warnings(caplog)
    assert fields["error"] == "no answer within 1 s; gave up after 1 attempt(s)"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pki.Credential, Path]]:
    ca = pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")]))
    yield pki.make_server_credential(ca), pki.write_ca_dir(tmp_path_factory.mktemp("certificates"), [ca])


def test_https_is_trusted_through_the_grid_ca_directory(tls: tuple[pki.Credential, Path],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    server, ca_dir = tls
    with Receiver(cert_pem=server.cert_pem, key_pem=server.key_pem) as receiver:
        assert sender(receiver.url(), ca_dir=ca_dir, secret=SECRET).send(event()) is True
        assert sender(receiver.url(), retries=0).send(event()) is False  # the system store alone does not know it
    assert len(receiver.deliveries) == 1 and receiver.deliveries[0].signed_with(SECRET)
    ((_, fields),) = warnings(caplog)
    assert "certificate verify failed" in str(fields["error"])


def test_display_name_keeps_scheme_host_and_port_only() -> None:
    assert display_name("https://user:pw@hooks.example.org:8443/services/T/B/x?k=v") == \
        "https://hooks.example.org:8443"
    assert display_name("https://hooks.example.org/x") == "https://hooks.example.org"
