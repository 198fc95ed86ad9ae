"""pytest fixtures `dists` and `installation`: the sdist and wheel of this checkout, and bin/install run twice into
one temporary root, built once per session for the install and the scheduling tests.

The first install is from the checkout (systemd timer, enabled, user ``nobody`` so that ownership is really set
when the tests run as root); then an operator edits the config and deletes image-lists.conf; the second install
is from the wheel with the bin/install the wheel carries (cron entry, enabled, the default user, which this host
lacks): what a site upgrading from a wheel runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = "/opt/imagesync"
OPERATOR_EDIT = "# edited by the operator: kept by every later install\n"


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path
    seconds: float


@dataclass(frozen=True)
class Installation:
    root: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    seconds: tuple[float, float]

    def path(self, absolute: str) -> Path:
        """Where an absolute path of the installed system is inside the temporary root."""
        return self.root / absolute.lstrip("/")

    @property
    def imagesync(self) -> Path:
        return self.path(f"{VENV}/bin/imagesync")


def system_python() -> str:
    """The Python bin/install makes the venv with: Debian's own when it can make venvs, else the one running us."""
    debian = "/usr/bin/python3"
    if Path(debian).exists() and subprocess.run([debian, "-c", "import ensurepip, venv"], check=False).returncode == 0:
        return debian
    return getattr(sys, "_base_executable", sys.executable)


def installed_env(**extra: str) -> dict[str, str]:
    """The environment for installed commands: without PYTHONPATH, which would import the checkout instead."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | extra


def run_install(script: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an installer script into ``root``; its output is returned (and shown when a test fails)."""
    command = ["bash", str(script), "--root", str(root), "--python", system_python(), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=installed_env(), check=False)


def _timed(command: Sequence[str]) -> float:
    start = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.monotonic() - start


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """``python -m build`` of the checkout: the sdist, then the wheel built from that sdist (so both are tested)."""
    out = tmp_path_factory.mktemp("dist")
    seconds = _timed([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)])
    (sdist,) = out.glob("imagesync-*.tar.gz")
    (wheel,) = out.glob("imagesync-*.whl")
    return Dists(sdist=sdist, wheel=wheel, seconds=seconds)


@pytest.fixture(scope="session")
def installation(dists: Dists) -> Iterator[Installation]:
    """The temporary root after both installs (see the module docstring). Fails when either install fails."""
    # Not below pytest's 0700 temporary directory: the installed user (nobody) must reach its files, as on a host.
    root = Path(tempfile.mkdtemp(prefix="imagesync-root-"))
    try:
        root.chmod(0o755)
        yield _install_twice(root, dists)
    finally:
        shutil.rmtree(root)


def _install_twice(root: Path, dists: Dists) -> Installation:
    user = ["--user", "nobody"] if os.geteuid() == 0 else []
    start = time.monotonic()
    first = run_install(REPO / "bin" / "install", root, "--scheduler", "systemd", "--enable", *user)
    middle = time.monotonic()
    assert first.returncode == 0, first.stdout + first.stderr
    config = root / "etc/imagesync/imagesync.yaml"
    config.write_text(config.read_text() + OPERATOR_EDIT)
    (root / "etc/imagesync/image-lists.conf").unlink()
    # What a wheel-only site runs: the installer the wheel put beside the venv, given the new wheel.
    script = root / VENV.lstrip("/") / "share/imagesync/bin/install"
    second = run_install(script, root, "--wheel", str(dists.wheel), "--scheduler", "cron", "--enable")
    assert second.returncode == 0, second.stdout + second.stderr
    return Installation(root=root, first=first, second=second,
                        seconds=(middle - start, time.monotonic() - middle))
