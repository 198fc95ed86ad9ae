"""Running qemu-img on publisher-supplied bytes: a fixed environment and hard resource limits.

Also home of :class:`ConversionError`, the one error of the conversion stage (convert, ova and this module).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from imagesync import redact
from imagesync.errors import ImagesyncError

GiB = 1024**3
# MALLOC_ARENA_MAX keeps qemu's thread pool from reserving gigabytes of address space under RLIMIT_AS.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "MALLOC_ARENA_MAX": "2"}


class ConversionError(ImagesyncError):
    """An image could not be inspected, unpacked or converted; ``subject`` is the image's name."""


@dataclass(frozen=True)
class Limits:
    """Hard limits for one qemu-img process; ``file_size`` 0 forbids writing any file."""

    address_space: int
    cpu_seconds: int
    timeout: float
    file_size: int


INFO_LIMITS = Limits(address_space=2 * GiB, cpu_seconds=120, timeout=180, file_size=0)


def convert_limits(max_size: int) -> Limits:
    """Limits for a ``qemu-img convert`` whose output may be at most about ``max_size`` bytes."""
    # Headroom over max_size for qcow2/vhdx metadata; a runaway output is killed by SIGXFSZ.
    return Limits(32 * GiB, cpu_seconds=6 * 3600, timeout=12 * 3600, file_size=max_size + max_size // 32 + GiB)


def qemu_img_available() -> str | None:
    """Return the path of qemu-img, or None when it is not installed."""
    return shutil.which("qemu-img")


def run(args: Sequence[str], limits: Limits, *, name: str, what: str) -> str:
    """Run ``qemu-img args`` under ``limits``; returns its stdout. ``what`` names the command in messages.

    Raises ConversionError (``subject`` is ``name``) if qemu-img is missing, cannot start, times out or fails.
    """
    binary = qemu_img_available()
    if binary is None:
        raise ConversionError("qemu-img is not installed", subject=name, hint="install qemu-utils (Debian) or qemu-img")

    def apply_limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    try:
        # preexec_fn only calls setrlimit (no locks, no imports), which is safe even with download threads running.
        done = subprocess.run(
            [binary, *args], stdin=subprocess.DEVNULL, capture_output=True, env=_ENV, cwd="/",
            timeout=limits.timeout, preexec_fn=apply_limits, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"qemu-img {what} timed out after {limits.timeout:.0f}s", subject=name) from exc
    except OSError as exc:
        raise ConversionError(f"cannot run qemu-img: {exc}", subject=name) from exc
    if done.returncode != 0:
        cause = _last_line(done.stderr.decode("utf-8", "replace"), done.returncode)
        hint = "the file is not an image qemu-img can read" if what == "info" else "check free space and the image"
        raise ConversionError(f"qemu-img {what} failed: {cause}", subject=name, hint=hint)
    return done.stdout.decode("utf-8", "replace")


def _last_line(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if returncode < 0:
        cause = f"killed by signal {-returncode} (resource limit reached?)"
    else:
        cause = lines[-1].removeprefix("qemu-img: ") if lines else f"exit status {returncode}"
    return redact.text(cause)[:300]
