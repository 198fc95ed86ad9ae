"""The dev cloud's own venv: created from the pins and constraints.txt, stamped with their hash.

Standard library only: this module runs under the system python3 as well as under the project venv.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.devcloud.procs import DevcloudError

PINS = (
    "glance==33.0.0",
    "keystone==30.0.0",
    "python-glanceclient==4.13.0",
    "keystoneauth1==5.18.1",
    "python-keystoneclient==6.0.0",
    "gunicorn==27.0.1",
)
CONSTRAINTS = Path(__file__).resolve().parent / "constraints.txt"
STAMP = ".devcloud-constraints-sha256"


def install_key() -> str:
    """Hash of the pins and constraints: the venv stamp and the cache key."""
    return hashlib.sha256(CONSTRAINTS.read_bytes() + "\n".join(PINS).encode()).hexdigest()


def installed(venv: Path) -> bool:
    stamp = venv / STAMP
    return stamp.is_file() and stamp.read_text().strip() == install_key() and (venv / "bin" / "gunicorn").exists()


def _run(argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise DevcloudError(f"{shlex.join(argv[:4])}... failed with exit code {result.returncode}:\n{tail}")


def _ensure_venv_module() -> None:
    # Debian's python3 ships venv without ensurepip unless pythonX.Y-venv is installed.
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        package = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
        print(f"devcloud: installing {package} with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def install(home: Path) -> None:
    """Create `<home>/venv` from the pins and constraints.txt; a no-op when its stamp matches. Raises DevcloudError."""
    venv = home / "venv"
    if installed(venv):
        print(f"devcloud: {venv} is up to date", file=sys.stderr)
        return
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "install.log"
    log.write_bytes(b"")
    _ensure_venv_module()
    _run([sys.executable, "-m", "venv", str(venv)], log)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "-c", str(CONSTRAINTS), *PINS], log)
    # Written last: an interrupted install has no stamp and is redone from scratch.
    (venv / STAMP).write_text(install_key() + "\n")
    print(f"devcloud: installed {venv} in {time.monotonic() - started:.1f} s", file=sys.stderr)


def freeze(home: Path) -> None:
    """Rewrite constraints.txt from a fresh, unconstrained install of the pins. Raises DevcloudError."""
    scratch = home / "freeze-venv"
    shutil.rmtree(scratch, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "freeze.log"
    _run([sys.executable, "-m", "venv", str(scratch)], log)
    _run([str(scratch / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *PINS], log)
    frozen = subprocess.run(
        [str(scratch / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    header = (
        "# Every package of the dev cloud venv, pinned. Regenerate with: python tests/devcloud/devcloud.py freeze\n"
    )
    CONSTRAINTS.write_text(header + frozen)
    shutil.rmtree(scratch)
