"""A tiny token service for docker-registry's ``auth: token`` mode: HTTPS on 127.0.0.1, ES256 JWTs.

The registry answers an unauthenticated request with ``401`` and ``WWW-Authenticate: Bearer realm=...,service=...,
scope=...``; the client then asks this service (Basic credentials, or none for anonymous) for a token carrying the
scope, and retries with ``Authorization: Bearer``. The registry trusts our tokens through ``rootcertbundle``: a
certificate whose public key signed them, found by the JWT's ``kid`` (a libtrust key fingerprint, as the
distribution token spec requires).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.tls import ServerPKI

ISSUER = "imagesync-test-token-service"
SERVICE = "imagesync-test-registry"
_ALL_ACTIONS = ("pull", "push", "delete")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """The libtrust fingerprint docker-registry looks ``kid`` up by: base32 of the first 240 bits of the SHA-256
    of the DER SubjectPublicKeyInfo, in twelve groups of four joined by colons."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenSigner:
    """An ES256 key, its self-signed certificate (the registry's rootcertbundle) and the JWTs it signs."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    lifetime: int = 300

    def certificate_pem(self) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(self.key.public_key())}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "iat": now, "nbf": now - 10,
                  "exp": now + self.lifetime, "jti": secrets.token_hex(12), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        # JWS wants ES256 signatures as the raw 32-byte r and s, not DER.
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@dataclass
class TokenRequest:
    """What a client asked the service for, so tests can see the challenge flow happened as intended."""

    user: str | None
    scopes: list[str]
    service: str


class TokenService:
    """HTTPS token endpoint; ``users`` get pull, push and delete; anonymous callers get pull only if
    ``anonymous_pull``; a wrong password is a 401, as real token services answer."""

    def __init__(self, pki: ServerPKI, users: dict[str, str], *, anonymous_pull: bool = False) -> None:
        self.signer = TokenSigner()
        self.users = dict(users)
        self.anonymous_pull = anonymous_pull
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.socket = _context(pki).wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}/token"

    def write_root_bundle(self, path: Path) -> Path:
        path.write_bytes(self.signer.certificate_pem())
        return path

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def answer(self, authorization: str | None, query: str) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one token request."""
        params = parse_qs(query)
        scopes = params.get("scope", [])
        user = _basic_user(authorization)
        with self._lock:
            self.requests.append(TokenRequest(user[0] if user else None, scopes, params.get("service", [""])[0]))
        if user is not None and self.users.get(user[0]) != user[1]:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        actions = _ALL_ACTIONS if user else (("pull",) if self.anonymous_pull else ())
        access = [grant for scope in scopes if (grant := _grant(scope, actions))]
        token = self.signer.token(user[0] if user else "", access)
        return 200, {"token": token, "access_token": token, "expires_in": self.signer.lifetime}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                code, body = service.answer(self.headers.get("Authorization"), parts.query) \
                    if parts.path == "/token" else (404, {})
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _grant(scope: str, actions: tuple[str, ...]) -> dict[str, Any] | None:
    # "repository:name:pull,push" -- the name itself may hold no colon in a distribution scope, but take the
    # last field as the actions anyway (a port in a name would otherwise break the split).
    kind, _, rest = scope.partition(":")
    name, _, wanted = rest.rpartition(":")
    granted = [a for a in wanted.split(",") if a in actions]
    if kind != "repository" or not name or not granted:
        return None
    # Grant every action we allow, not only those asked for: oras-py caches one token per client.
    return {"type": kind, "name": name, "actions": list(actions)}


def _basic_user(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _context(pki: ServerPKI) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_bytes(pki.cert_pem)
        key.write_bytes(pki.key_pem)
        context.load_cert_chain(cert, key)
    return context
