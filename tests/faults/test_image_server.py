"""The image server fails in every way the list server can, and also changes bytes behind an unchanged URL.

Each scenario: a clean first run puts version 1 of ``demo-a``, ``demo-b`` and ``other-c`` in the archive; then
list ``demo`` moves both of its images to version 2 and the server of ``demo-a`` breaks. The run must exit 1, say in
one line that image ``demo-a`` failed and why, keep ``demo-a`` version 1 active (upload first, retire after) and
update ``demo-b``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from imagesync.demo.server import ListServer
from imagesync.errors import EXIT_PARTIAL
from tests.faults.breakage import HTTP_FAULTS, Breakage
from tests.faults.outcome import assert_no_crash, assert_one_line, clean_sync, imagesync
from tests.faults.scene import ARCHIVE, FaultPki, Scene, holdings, image


def _changed_bytes(server: ListServer, path: str, data: bytes, _keys: FaultPki) -> None:
    # Same URL, same length, one bit different from what the signed list's sha512 describes.
    server.put(path, bytes([data[0] ^ 1]) + data[1:])


IMAGE_FAULTS = {
    **HTTP_FAULTS,
    # The client reads the announced half and finds it shorter than hv:size.
    "short-content-length": replace(HTTP_FAULTS["short-content-length"], cause="size mismatch"),
    # Image downloads never send the list's token: telling the operator to configure one cannot help.
    "http-401": replace(HTTP_FAULTS["http-401"], misleads=("token_file", "token_env")),
    "sha512-mismatch": Breakage(_changed_bytes, "checksum mismatch"),
}
ROWS = list(IMAGE_FAULTS)


@pytest.mark.parametrize("fault", ROWS)
def test_image_server_fault_fails_that_image_alone(scene: Scene, tmp_path: Path, fault: str) -> None:
    cfg = scene.config(tmp_path / "run")
    scene.publish("demo", [image("demo-a"), image("demo-b")])
    scene.publish("other", [image("other-c")])
    clean_sync(cfg)
    new_a = image("demo-a", "2")
    scene.publish("demo", [new_a, image("demo-b", "2")])
    breakage = IMAGE_FAULTS[fault]
    breakage.apply(scene.images, new_a.path, new_a.data, scene.keys)

    outcome = imagesync(cfg)

    assert outcome.code == EXIT_PARTIAL, outcome.explain()
    assert_no_crash(outcome)
    assert outcome.failed_lists() == {}
    failed = outcome.failed_actions()
    assert list(failed) == [(ARCHIVE, "demo-a", "update")], outcome.explain()
    assert_one_line(failed[(ARCHIVE, "demo-a", "update")], "demo/demo-a", breakage.cause, misleads=breakage.misleads)
    assert len(outcome.log_lines("list=demo", "image=demo-a", f"target={ARCHIVE}", "result=failed")) == 1, \
        outcome.stderr
    assert holdings(tmp_path / "run" / ARCHIVE) == {
        "demo/demo-a-1": "active",  # nothing retired: the new version never arrived
        "demo/demo-b-2": "active", "demo/demo-b-1": "retired",  # the other image's work done
        "other/other-c-1": "active",
    }
