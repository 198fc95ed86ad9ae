"""Pruning the cache: downloads, conversions and partial files that no pending work in the state needs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from imagesync.config.settings import Settings
from imagesync.run import lock
from imagesync.state.lifecycle import TargetState
from imagesync.state.store import StateStore

log = logging.getLogger(__name__)
# Records in these states may still need their bytes next run (a retried upload).
_NEEDS_BYTES = {TargetState.PENDING, TargetState.DOWNLOADED, TargetState.UPLOADING, TargetState.FAILED}


def collect(settings: Settings, *, dry_run: bool) -> list[tuple[Path, int]]:
    """Remove (or, with ``dry_run``, list) unneeded cache files; return (path, size) of each.

    Takes the run lock so no sync is downloading meanwhile. Raises LockHeldError.
    """
    with lock.acquire(settings.state_dir), StateStore.open(settings.state_dir) as store:
        needed = {r.sha512 for r in store.target_images() if r.state in _NEEDS_BYTES}
        candidates = [p for p in _cache_files(settings.cache_dir) if _sha_of(p) not in needed]
        removed = [(work, _tree_size(work)) for work in sorted(settings.cache_dir.glob("converted/.work-*"))]
        if not dry_run:
            for work, _ in removed:
                # Scratch space of a conversion that a killed run left behind.
                shutil.rmtree(work, ignore_errors=True)
        for path in candidates:
            size = path.stat().st_size
            if not dry_run:
                path.unlink(missing_ok=True)
                log.info("gc removed %s bytes=%d", path, size)
            removed.append((path, size))
        return removed


def _cache_files(cache_dir: Path) -> list[Path]:
    patterns = ("images/*/*", "partial/*", "converted/*")
    return sorted(p for pattern in patterns for p in cache_dir.glob(pattern) if p.is_file())


def _tree_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _sha_of(path: Path) -> str:
    # images/<aa>/<sha512>, partial/<sha512>.partial, converted/<sha512>.<format>: the name starts with the key.
    return path.name.split(".", 1)[0]
