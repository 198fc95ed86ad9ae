"""A state.db that becomes unusable in the middle of a run fails the steps that write it, each with one line; the
run still ends with a report, and the next run converges (issue 7: no state write raises outside the isolation)."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

from imagesync.config import settings as config
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.run.pipeline import sync
from imagesync.state.store import StateStore
from imagesync.targets.directory import DirectoryDriver


def test_state_locked_by_another_process_mid_run(world: DemoWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world.publish(demo_images("1.0"))
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    settings = config.load(path)
    monkeypatch.setenv("IMAGESYNC_STATE_BUSY_TIMEOUT", "0.2")
    StateStore.open(settings.state_dir).close()
    holder = sqlite3.connect(settings.state_dir / "state.db", isolation_level=None, check_same_thread=False)
    real_add = DirectoryDriver.add
    taking = threading.Lock()  # the two uploads run side by side: only one of them may begin the holder's transaction

    def add_then_lock(self: DirectoryDriver, upload: Any) -> str:
        # Another process (here: another connection) takes the database while the upload runs.
        with taking:
            if not holder.in_transaction:
                holder.execute("BEGIN EXCLUSIVE")
        return real_add(self, upload)

    monkeypatch.setattr(DirectoryDriver, "add", add_then_lock)
    try:
        result = sync(settings, dry_run=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == EXIT_PARTIAL
    errors = [r.error or "" for r in result.results]
    assert [r.status for r in result.results] == ["failed", "failed"]
    assert all("state.db: locked by another process" in e and "\n" not in e for e in errors), errors

    monkeypatch.setattr(DirectoryDriver, "add", real_add)
    again = sync(settings, dry_run=False)
    assert again.exit_code == EXIT_OK
    with StateStore.open(settings.state_dir) as store:
        assert sorted(r.state.value for r in store.target_images()) == ["active", "active"]
