"""Debian's ``docker-registry`` (distribution 2.8) as a child process on 127.0.0.1 over HTTPS, for the demo and the
tests: one copy of "start it on a free port, wait until it answers, stop it so no process is left".

The caller gives the TLS credential and, for auth or notifications, extra top-level config; storage is a
directory under ``workdir`` with deletes enabled. The tests' auth modes (htpasswd, token) live in
tests/support/oci_registry.py and build on :class:`DockerRegistry`.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
import yaml

from imagesync.errors import EXIT_USAGE, ImagesyncError

BINARY = "docker-registry"
_START_TIMEOUT = 20.0


class RegistryUnavailable(ImagesyncError):
    """``docker-registry`` is missing (exit 2: the machine lacks a package) or did not come up (its log's tail)."""

    exit_code = EXIT_USAGE


class DockerRegistry:
    """One ``docker-registry serve`` process; a context manager that starts it and stops it (no process left)."""

    def __init__(self, workdir: Path, *, cert_pem: bytes, key_pem: bytes, ca_pem: bytes,
                 extra_config: Mapping[str, Any] | None = None, access_log: bool = False) -> None:
        """Prepare (not start) a registry keeping its files in ``workdir``; ``ca_pem`` is what clients trust;
        ``access_log`` writes one line per request into :attr:`log_file` (tests and benchmarks count them)."""
        self.access_log = access_log
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.ca_file = workdir / "ca.pem"
        self.port = 0
        self._tls = (cert_pem, key_pem, ca_pem)
        self._extra = dict(extra_config or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "registry.log"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://{self.host}"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as OCI references name a registry."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """Where the registry's output (and access log) goes."""
        return self._log

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running process, None once stopped."""
        return self._process

    def start(self) -> Self:
        """Start the registry and wait until it answers. Raises RegistryUnavailable when the binary is missing or
        the registry does not come up; nothing is left running then."""
        binary = find_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(self._tls[2])
        try:
            self._start(binary)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s) and reap it. Raises nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the bytes of ``digest`` (distribution's storage layout)."""
        algorithm, _, hexdigest = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of the registry's own log ("" when there is none)."""
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _start(self, binary: str) -> None:
        # Another process may take the port between probe and bind: try a few ports before giving up.
        for _ in range(3):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(yaml.safe_dump(self._config()))
            with self._log.open("ab") as log:
                # A session of its own: a Ctrl-C on the terminal reaches only us, and stop() ends it in order.
                self._process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log,
                                                 stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                return
            self.stop()
            if "address already in use" not in self.log_tail():
                break
        raise RegistryUnavailable(f"{BINARY} did not come up on {self.host}; its log ends: {self.log_tail(3)}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                # Any HTTP answer (200, or 401 with a challenge) means it serves; TLS is checked against the CA.
                requests.get(f"{self.url}/v2/", verify=str(self.ca_file), timeout=2)
                return True
            except requests.RequestException:
                time.sleep(0.05)
        return False

    def _config(self) -> dict[str, Any]:
        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        cert.write_bytes(self._tls[0])
        key.touch(mode=0o600)
        key.write_bytes(self._tls[1])
        return {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": not self.access_log}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16),
                     "tls": {"certificate": str(cert), "key": str(key)}},
            **self._extra,
        }


def find_binary() -> str:
    """The path of ``docker-registry``. Raises RegistryUnavailable, saying which package to install."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise RegistryUnavailable(f"{BINARY} not found on PATH: apt-get install docker-registry (Debian's "
                                  "package, the OCI distribution registry)")
    return binary


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
