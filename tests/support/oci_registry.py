"""A real OCI registry for the tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 over HTTPS.

Three auth modes, the ones registries in the wild use: ``none`` (anonymous), ``htpasswd`` (Basic challenge,
bcrypt hashes) and ``token`` (Bearer challenge answered by :mod:`tests.support.oci_token`, the flow Harbor and
Docker Hub use). Storage is a temporary directory with deletes enabled, so tests can delete manifests and damage
stored blobs. Also a pytest plugin: ``oci_registry`` (one registry per auth mode and worker, started on first
use) and ``oci_registries`` (pick a mode by name).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import bcrypt
import pytest
import requests
import yaml

from tests.support.oci_token import ISSUER, SERVICE, TokenService
from tests.support.tls import ServerPKI, make_server_pki, write_igtf_ca

AuthMode = Literal["none", "htpasswd", "token"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "htpasswd", "token")
BINARY = "docker-registry"
USER = "pusher"
_START_TIMEOUT = 20.0


class RegistryUnavailable(RuntimeError):
    """docker-registry is missing or did not come up; the message says which and shows its log's tail."""


@dataclass(frozen=True)
class Login:
    username: str
    password: str


class RegistryServer:
    """One ``docker-registry serve`` process; a context manager that starts it and stops it (no process left)."""

    def __init__(self, workdir: Path, pki: ServerPKI, *, auth: AuthMode = "none",
                 notifications_url: str | None = None, anonymous_pull: bool = False) -> None:
        self.workdir = workdir
        self.pki = pki
        self.auth = auth
        self.notifications_url = notifications_url
        self.login = Login(USER, secrets.token_urlsafe(12)) if auth != "none" else None
        self.storage = workdir / "storage"
        self.ca_dir = workdir / "ca"
        self.ca_file = workdir / "ca.pem"
        self.port = 0
        self.token_service = (TokenService(pki, {USER: self.login.password}, anonymous_pull=anonymous_pull)
                              if self.login and auth == "token" else None)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "registry.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        binary = shutil.which(BINARY)
        if binary is None:
            raise RegistryUnavailable(f"{BINARY} not found on PATH: apt-get install docker-registry "
                                      "(bin/test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(self.pki.ca_pem)
        write_igtf_ca(self.pki.ca_pem, self.ca_dir)
        if self.token_service is not None:
            self.token_service.__enter__()
        try:
            self._start(binary)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.token_service is not None:
            self.token_service.__exit__(None, None, None)

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the bytes of ``digest`` (distribution's storage layout)."""
        algorithm, _, hexdigest = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"

    def corrupt_blob(self, digest: str) -> None:
        """Flip the first byte of a stored blob, keeping its length: the registry then serves wrong bytes under
        the right digest, as a damaged disk or a lying mirror would."""
        path = self.blob_path(digest)
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))

    def tamper_blob(self, digest: str, old: bytes, new: bytes) -> None:
        """Replace ``old`` by ``new`` (same length) in a stored blob or manifest: a manifest stays valid JSON, so
        the registry serves it, altered, under its original digest."""
        assert len(old) == len(new), "keep the length: the registry checks sizes"
        path = self.blob_path(digest)
        data = path.read_bytes()
        assert old in data, f"{old!r} not in {digest}"
        path.write_bytes(data.replace(old, new, 1))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _start(self, binary: str) -> None:
        # Another worker may take the port between probe and bind: try a few ports before giving up.
        for _ in range(3):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(yaml.safe_dump(self._config()))
            with self._log.open("ab") as log:
                self._process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log,
                                                 stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                return
            if "address already in use" not in self.log_tail():
                break
        raise RegistryUnavailable(f"{BINARY} did not come up on {self.host}; its log ends:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            try:
                # Any HTTP answer (200, or 401 with a challenge) means it serves; TLS is checked against our CA.
                requests.get(f"{self.url}/v2/", verify=str(self.ca_file), timeout=2)
                return True
            except requests.RequestException:
                time.sleep(0.05)
        return False

    def _config(self) -> dict[str, Any]:
        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        cert.write_bytes(self.pki.cert_pem)
        key.write_bytes(self.pki.key_pem)
        key.chmod(0o600)
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16),
                     "tls": {"certificate": str(cert), "key": str(key)}},
        }
        if self.auth != "none":
            config["auth"] = self._auth_config()
        if self.notifications_url:
            config["notifications"] = {"endpoints": [{"name": "imagesync-test", "url": self.notifications_url,
                                                      "timeout": "2s", "threshold": 3, "backoff": "1s"}]}
        return config

    def _auth_config(self) -> dict[str, Any]:
        assert self.login is not None
        if self.token_service is not None:
            bundle = self.token_service.write_root_bundle(self.workdir / "token-root.pem")
            return {"token": {"realm": self.token_service.realm, "service": SERVICE, "issuer": ISSUER,
                              "rootcertbundle": str(bundle)}}
        # Cost 4, the least bcrypt allows: the registry checks the hash on every request.
        hashed = bcrypt.hashpw(self.login.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(f"{self.login.username}:{hashed}\n")
        return {"htpasswd": {"realm": "imagesync-test", "path": str(htpasswd)}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Registries:
    """One registry per auth mode, started on first use and stopped at the end of the session."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pki = make_server_pki("imagesync OCI test CA")
        self._running: dict[str, RegistryServer] = {}

    def get(self, auth: AuthMode) -> RegistryServer:
        if auth not in self._running:
            server = RegistryServer(self._root / f"{auth}-{os.getpid()}", self._pki, auth=auth)
            self._running[auth] = server.__enter__()
        return self._running[auth]

    def close(self) -> None:
        for server in self._running.values():
            server.__exit__(None, None, None)
        self._running.clear()


@pytest.fixture(scope="session")
def oci_registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    """Registries by auth mode (each xdist worker has its own session, so its own registries)."""
    registries = Registries(tmp_path_factory.mktemp("oci"))
    try:
        yield registries
    finally:
        registries.close()


@pytest.fixture(params=AUTH_MODES)
def oci_registry(request: pytest.FixtureRequest, oci_registries: Registries) -> RegistryServer:
    """The test runs once against each auth mode's registry. Fails (not skips) when docker-registry is missing:
    bin/test installs it, so its absence is a broken set-up to see, not a reason to pass quietly."""
    try:
        return oci_registries.get(request.param)
    except RegistryUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
