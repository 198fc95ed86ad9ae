"""Counting the qemu-img commands imagesync runs: each one still runs for real, the count only looks on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from imagesync.images import qemu

Calls = list[list[str]]


def count_qemu_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """From now on, every ``qemu.run`` is recorded (its arguments) in the returned list, then run as before.

    The installed qemu-img's driver list is asked first, as the first image of every run asks it: what is counted is
    what each image costs."""
    qemu.formats()
    calls: Calls = []
    real = qemu.run

    def counting(args: Sequence[str], limits: qemu.Limits, *, name: str, what: str) -> str:
        calls.append(list(args))
        return real(args, limits, name=name, what=what)

    monkeypatch.setattr(qemu, "run", counting)
    return calls


def wrapped_qemu_img(directory: Path, script: str) -> Path:
    """Create ``directory`` holding a ``qemu-img`` shell ``script`` around the real one (``{real}`` in the script is
    its path); returns the directory, for the front of PATH."""
    real = qemu.qemu_img_available()
    assert real is not None
    directory.mkdir()
    wrapper = directory / "qemu-img"
    wrapper.write_text("#!/bin/sh\n" + script.replace("{real}", real))
    wrapper.chmod(0o755)
    return directory
