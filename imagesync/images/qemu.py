"""Running qemu-img on publisher-supplied bytes: a fixed environment, hard resource limits, and a child that
dies with us.

Also home of :class:`ConversionError`, the one error of the conversion stage (convert, ova and this module).

A run killed with SIGKILL (OOM killer, ``kill -9`` of a stuck cron job) cannot clean up, so each qemu-img asks the
kernel for SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``). The kernel sends it when the *thread* that
forked the child ends, not the process: that is safe here because :func:`run` waits for the child on the thread
that started it (``subprocess.run`` kills the child itself on timeout or on any exception), so that thread always
outlives it. Whoever starts qemu-img otherwise (a Popen handed to another thread) must keep that guarantee.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imagesync.errors import ImagesyncError
from imagesync.util import redact

GiB = 1024**3
# MALLOC_ARENA_MAX keeps qemu's thread pool from reserving gigabytes of address space under RLIMIT_AS.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "MALLOC_ARENA_MAX": "2"}
_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Callable[..., int] | None:
    # Looked up once here, in the parent: the forked child only calls it (no dlopen, no import after fork).
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _find_prctl()


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


def formats() -> frozenset[str]:
    """The block drivers of the installed qemu-img (the "Supported formats" its help lists), asked once per binary.

    Raises ConversionError if qemu-img is missing, cannot run or lists no driver.
    """
    binary = qemu_img_available()
    if binary is None:
        raise ConversionError("qemu-img is not installed", hint="install qemu-utils (Debian) or qemu-img")
    return _formats_of(binary)


@functools.lru_cache(maxsize=4)
def _formats_of(binary: str) -> frozenset[str]:
    # Keyed by the binary's path: a run whose PATH names another qemu-img asks that one.
    lines = run(["--help"], INFO_LIMITS, name=binary, what="--help").splitlines()
    listed = next((line.split(":", 1)[1].split() for line in lines if line.startswith("Supported formats:")), [])
    if not listed:
        raise ConversionError("qemu-img --help lists no supported formats", subject=binary)
    return frozenset(listed)


def run(args: Sequence[str], limits: Limits, *, name: str, what: str) -> str:
    """Run ``qemu-img args`` under ``limits``; returns its stdout. ``what`` names the command in messages.

    Raises ConversionError (``subject`` is ``name``) if qemu-img is missing, cannot start, times out or fails.
    """
    binary = qemu_img_available()
    if binary is None:
        raise ConversionError("qemu-img is not installed", subject=name, hint="install qemu-utils (Debian) or qemu-img")

    parent = os.getpid()

    def in_child() -> None:
        _die_with(parent)
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    try:
        # preexec_fn only calls prctl and setrlimit (no locks, no imports), which is safe even with download
        # threads running.
        done = subprocess.run(
            [binary, *args], stdin=subprocess.DEVNULL, capture_output=True, env=_ENV, cwd="/",
            timeout=limits.timeout, preexec_fn=in_child, check=False,
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


def _die_with(parent: int) -> None:
    """In the forked child: be killed when the parent dies, and die now if it already has."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died between fork and prctl; then this process already has another parent.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _last_line(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if returncode < 0:
        cause = f"killed by signal {-returncode} (resource limit reached?)"
    else:
        cause = lines[-1].removeprefix("qemu-img: ") if lines else f"exit status {returncode}"
    return redact.text(cause)[:300]
