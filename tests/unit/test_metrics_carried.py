"""What a run takes over from the previous metrics file: the last success and the counters, never garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.cli import metrics

PREVIOUS = """\
# TYPE imagesync_last_success_timestamp_seconds gauge
imagesync_last_success_timestamp_seconds 1.7e+09
# TYPE imagesync_actions_total counter
imagesync_actions_total{kind="add",result="done"} 5.0
imagesync_actions_total{kind="retire",result="failed"} 1.0
# TYPE imagesync_bytes_downloaded_total counter
imagesync_bytes_downloaded_total 1024.0
# TYPE imagesync_bytes_uploaded_total counter
imagesync_bytes_uploaded_total 2048.0
"""


def test_the_previous_file_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "imagesync.prom"
    path.write_text(PREVIOUS)
    assert metrics.carried(path) == metrics.Carried(
        last_success=1.7e9, actions={("add", "done"): 5.0, ("retire", "failed"): 1.0}, downloaded=1024.0,
        uploaded=2048.0)


@pytest.mark.parametrize("text", ["not metrics at all\n", "imagesync_bytes_downloaded_total{ 1\n", "\xff"])
def test_an_unreadable_file_restarts_from_nothing_with_a_warning(tmp_path: Path, text: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "imagesync.prom"
    path.write_bytes(text.encode("latin-1"))
    assert metrics.carried(path) == metrics.Carried()
    assert "counters restart from zero" in caplog.text


def test_a_missing_file_is_a_first_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert metrics.carried(tmp_path / "none.prom") == metrics.Carried()
    assert caplog.text == ""


def test_nan_infinite_and_negative_values_count_as_zero(tmp_path: Path) -> None:
    path = tmp_path / "imagesync.prom"
    path.write_text("imagesync_bytes_downloaded_total NaN\nimagesync_bytes_uploaded_total +Inf\n"
                    'imagesync_actions_total{kind="add",result="done"} -3\n')
    assert metrics.carried(path) == metrics.Carried(actions={("add", "done"): 0.0})
