"""The list server fails in every way we know of; list ``other`` on another server must still be synced.

Each scenario: a clean first run puts both lists' images in the archive; then ``demo``'s server breaks and
``other`` publishes a new version. The run must exit 1, say in one line that list ``demo`` failed and why, retire
none of ``demo``'s images (unknown is not empty) and update ``other``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.errors import EXIT_PARTIAL
from tests.faults.breakage import HTTP_FAULTS
from tests.faults.outcome import assert_no_crash, assert_one_line, clean_sync, imagesync
from tests.faults.scene import ARCHIVE, LIST_PATHS, Scene, holdings, image


@pytest.mark.parametrize("fault", list(HTTP_FAULTS))
def test_list_server_fault_fails_that_list_alone(scene: Scene, tmp_path: Path, fault: str) -> None:
    cfg = scene.config(tmp_path / "run")
    scene.publish("demo", [image("demo-a"), image("demo-b")])
    scene.publish("other", [image("other-c")])
    clean_sync(cfg)
    scene.publish("other", [image("other-c", "2")])
    breakage = HTTP_FAULTS[fault]
    breakage.apply(scene.lists, LIST_PATHS["demo"], scene.served["demo"], scene.keys)

    outcome = imagesync(cfg)

    assert outcome.code == EXIT_PARTIAL, outcome.explain()
    assert_no_crash(outcome)
    assert list(outcome.failed_lists()) == ["demo"], outcome.explain()
    error = assert_one_line(outcome.failed_lists()["demo"], breakage.cause, misleads=breakage.misleads)
    assert error.startswith("demo: "), error
    assert len(outcome.log_lines("list=demo", "result=failed", breakage.cause)) == 1, outcome.stderr
    assert outcome.failed_actions() == {}
    assert holdings(tmp_path / "run" / ARCHIVE) == {
        "demo/demo-a-1": "active", "demo/demo-b-1": "active",  # nothing retired
        "other/other-c-2": "active", "other/other-c-1": "retired",  # the other list's work done
    }
