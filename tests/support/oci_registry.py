"""A real OCI registry for the tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 over HTTPS,
started by :mod:`imagesync.demo.registry` (the demo's copy of that process handling), with the tests' auth modes.

Three auth modes, the ones registries in the wild use: ``none`` (anonymous), ``htpasswd`` (Basic challenge,
bcrypt hashes) and ``token`` (Bearer challenge answered by :mod:`tests.support.oci_token`, the flow Harbor and
Docker Hub use). Storage is a temporary directory with deletes enabled, so tests can delete manifests and damage
stored blobs. Also a pytest plugin: ``oci_registry`` (one registry per auth mode and worker, started on first
use) and ``oci_registries`` (pick a mode by name).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import bcrypt
import pytest

from imagesync.demo.registry import DockerRegistry, RegistryUnavailable, find_binary, free_port
from tests.support.oci_token import ISSUER, SERVICE, TokenService
from tests.support.tls import ServerPKI, make_server_pki, write_igtf_ca

AuthMode = Literal["none", "htpasswd", "token"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "htpasswd", "token")
USER = "pusher"

__all__ = ["AUTH_MODES", "AuthMode", "Login", "Registries", "RegistryServer", "RegistryUnavailable", "free_port"]


@dataclass(frozen=True)
class Login:
    username: str
    password: str


class RegistryServer:
    """A :class:`~imagesync.demo.registry.DockerRegistry` with the tests' auth modes and notifications; a context
    manager that starts it (and its token service) and stops both (no process left)."""

    def __init__(self, workdir: Path, pki: ServerPKI, *, auth: AuthMode = "none",
                 notifications_url: str | None = None, notification_headers: dict[str, list[str]] | None = None,
                 anonymous_pull: bool = False, access_log: bool = False) -> None:
        self.workdir = workdir
        self.pki = pki
        self.auth = auth
        self.notifications_url = notifications_url
        self.notification_headers = notification_headers or {}
        self.login = Login(USER, secrets.token_urlsafe(12)) if auth != "none" else None
        self.ca_dir = workdir / "ca"
        self.token_service = (TokenService(pki, {USER: self.login.password}, anonymous_pull=anonymous_pull)
                              if self.login and auth == "token" else None)
        self.registry = DockerRegistry(workdir, cert_pem=pki.cert_pem, key_pem=pki.key_pem, ca_pem=pki.ca_pem,
                                       access_log=access_log)

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def port(self) -> int:
        return self.registry.port

    @property
    def storage(self) -> Path:
        return self.registry.storage

    @property
    def ca_file(self) -> Path:
        return self.registry.ca_file

    @property
    def _process(self) -> subprocess.Popen[bytes] | None:
        return self.registry.process

    def __enter__(self) -> Self:
        find_binary()  # before anything else needs a tool (openssl below): the missing registry is the news
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_igtf_ca(self.pki.ca_pem, self.ca_dir)
        if self.token_service is not None:
            self.token_service.__enter__()
        try:
            self.registry = DockerRegistry(self.workdir, cert_pem=self.pki.cert_pem, key_pem=self.pki.key_pem,
                                           ca_pem=self.pki.ca_pem, extra_config=self._extra_config(),
                                           access_log=self.registry.access_log).start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.registry.stop()
        if self.token_service is not None:
            self.token_service.__exit__(None, None, None)

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the bytes of ``digest`` (distribution's storage layout)."""
        return self.registry.blob_path(digest)

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
        return self.registry.log_tail(lines)

    def _extra_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.auth != "none":
            config["auth"] = self._auth_config()
        if self.notifications_url:
            config["notifications"] = {"endpoints": [{"name": "imagesync-test", "url": self.notifications_url,
                                                      "headers": self.notification_headers,
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


@dataclass(frozen=True)
class Logged:
    """One request as the registry's access log has it."""

    method: str
    path: str  # without the query
    status: int

    @property
    def kind(self) -> str:
        """``tags/list``, ``manifest``, ``blob``, ``base /v2/`` or ``other``."""
        path = self.path
        return ("tags/list" if path.endswith("/tags/list") else "manifest" if "/manifests/" in path
                else "blob" if "/blobs/" in path else "base /v2/" if path == "/v2/" else "other")


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


def logged_after(log_file: Path, offset: int) -> tuple[list[Logged], int]:
    """The requests a registry started with ``access_log`` logged after byte ``offset`` (waiting until the log
    stops growing: lines are written as responses complete), and the new offset."""
    size = -1
    while size != log_file.stat().st_size:
        size = log_file.stat().st_size
        time.sleep(0.05)
    with log_file.open("rb") as handle:
        handle.seek(offset)
        text = handle.read(size - offset).decode(errors="replace")
    found = [_ACCESS.search(line) for line in text.splitlines()]
    return [Logged(m["method"], m["path"].split("?")[0], int(m["status"])) for m in found if m], size


class Registries:
    """One registry per auth mode, started on first use and stopped at the end of the session."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pki = make_server_pki("imagesync OCI test CA")
        self._running: dict[str, RegistryServer] = {}

    def get(self, auth: AuthMode) -> RegistryServer:
        if auth not in self._running:
            server = RegistryServer(self._root / f"{auth}-{os.getpid()}", self._pki, auth=auth, access_log=True)
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
