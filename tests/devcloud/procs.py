"""Start gunicorn services on loopback, probe them, and stop them by the PID we recorded (never by name).

Standard library only: this module runs under the system python3 as well as under the project venv.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

GLANCE_WORKERS_ENV = "IMAGESYNC_DEVCLOUD_GLANCE_WORKERS"


class DevcloudError(RuntimeError):
    """Anything that keeps the dev cloud from installing, starting or stopping; the message says what to look at."""


@dataclass(frozen=True)
class Service:
    """One gunicorn-served WSGI application of the dev cloud."""

    name: str  # "keystone" or "glance": names the pid file, the log and the shim module
    port: int
    probe_path: str  # answers 200 only once the application has loaded

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for 127.0.0.1 right now; all sockets stay open until every port is known."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def log_file(run_dir: Path, name: str) -> Path:
    return run_dir / "logs" / f"{name}.log"


def glance_workers() -> int:
    """Glance's gunicorn worker processes: $IMAGESYNC_DEVCLOUD_GLANCE_WORKERS, default 1; raises DevcloudError.

    One is enough for the tests. A real Glance runs several API workers (its own default: one per CPU); with one,
    concurrent uploads are all received by one process under one GIL, which a benchmark of them should not measure.
    Read here, not in devcloud.py: that file is part of the template key, and the worker count shapes no bootstrap.
    """
    text = os.environ.get(GLANCE_WORKERS_ENV, "").strip() or "1"
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise DevcloudError(f"{GLANCE_WORKERS_ENV}={text!r}: expected a whole number from 1 to 16")
    return int(text)


def spawn(venv: Path, run_dir: Path, service: Service, env: dict[str, str]) -> int:
    """Start one gunicorn master in its own session and record its PID; raises DevcloudError if it cannot be run."""
    log = log_file(run_dir, service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    workers = glance_workers() if service.name == "glance" else 1
    argv = [
        str(venv / "bin" / "gunicorn"),
        "--workers", str(workers), "--worker-class", "gthread", "--threads", "8",
        "--no-control-socket",
        "--bind", f"127.0.0.1:{service.port}",
        "--chdir", str(run_dir),
        # The shims are copied into the run directory so no other module of tests/devcloud is importable there.
        "--pythonpath", str(run_dir),
        # Large image uploads keep one request busy for long; the sync worker heartbeat must not kill it.
        "--timeout", "600", "--graceful-timeout", "5",
        "--error-logfile", str(log), "--access-logfile", str(log),
        f"shim_{service.name}:application",
    ]  # fmt: skip
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=run_dir, start_new_session=True
            )
        except OSError as exc:
            raise DevcloudError(f"cannot run {argv[0]}: {exc}; run `devcloud.py install` first") from exc
    pid_file(run_dir, service.name).write_text(f"{proc.pid}\n", encoding="ascii")
    return proc.pid


def read_pid(run_dir: Path, name: str) -> int | None:
    """The recorded PID if it still names a live process of this run directory, else None."""
    try:
        pid = int(pid_file(run_dir, name).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return pid if _is_ours(pid, run_dir) else None


def _is_ours(pid: int, run_dir: Path) -> bool:
    # A PID may have been reused since we wrote it: only a live gunicorn whose working directory is this
    # run directory is ours. gunicorn rewrites its argv into a process title, so argv cannot name the
    # directory, and is blank for an instant while it does. Zombies (state Z) count as gone.
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes()
        stat = (proc / "stat").read_text(encoding="ascii", errors="replace")
        cwd = os.readlink(proc / "cwd")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and cwd == str(run_dir) and (b"gunicorn" in cmdline or not cmdline.strip(b"\0 "))


def stop(run_dir: Path, names: list[str], timeout: float = 10.0) -> list[str]:
    """SIGTERM the recorded process groups at once, SIGKILL what is left after timeout; remove the pid files.

    Returns the names that were running.
    """
    pids = {name: pid for name in names if (pid := read_pid(run_dir, name)) is not None}
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    # Workers may outlive their master for a moment: wait for whole groups, not just the masters.
    while any(_group_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids.values():
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
    for name in names:
        pid_file(run_dir, name).unlink(missing_ok=True)
    return list(pids)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # spawn() made the master a session (and group) leader, so its workers get the signal too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def probe(url: str, timeout: float = 2.0) -> bool:
    """True if GET url answers 2xx/3xx within timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 400)
    except urllib.error.HTTPError as exc:
        return 300 <= exc.code < 400
    except (OSError, ValueError):
        return False


def wait_healthy(run_dir: Path, services: list[Service], deadline_s: float = 60.0) -> None:
    """Poll every service until it answers; raises DevcloudError with the log tail if one dies or stays silent."""
    deadline = time.monotonic() + deadline_s
    pending = list(services)
    while pending:
        for service in list(pending):
            if probe(service.url + service.probe_path):
                pending.remove(service)
            elif read_pid(run_dir, service.name) is None:
                raise DevcloudError(f"{service.name} exited during start-up:\n{log_tail(run_dir, service.name)}")
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            tails = "\n".join(log_tail(run_dir, s.name) for s in pending)
            raise DevcloudError(f"{names} did not answer within {deadline_s:.0f} s:\n{tails}")
        if pending:
            time.sleep(0.1)


def log_tail(run_dir: Path, name: str, lines: int = 40) -> str:
    """The last lines of a service log, headed by its path."""
    path = log_file(run_dir, name)
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        text = ["(no log)"]
    return f"--- {path}\n" + "\n".join(text)
