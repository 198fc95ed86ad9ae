"""A real ``imagesync listen`` process for the tests: started on a free port of 127.0.0.1, its log collected,
asked over HTTP, stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from imagesync.notify.webhooks import signature

SECRET = "listen-secret-0123456789abcdef"


def secret_file(root: Path) -> Path:
    path = root / "listen.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def listen_config(root: Path, **pace: object) -> dict[str, object]:
    """The ``listen:`` section: port 0 (the OS picks), the test secret, and ``pace`` (debounce, max_wait...)."""
    return {"listen": {"address": "127.0.0.1", "port": 0, "secret_file": str(secret_file(root)), **pace}}


class Listener:
    """``imagesync --config CONFIG listen``; :attr:`url` once it is bound."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lines: list[str] = []
        self.url = ""
        self._bound = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self.process = subprocess.Popen([sys.executable, "-m", "imagesync", "--config", str(self.config), "listen"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._bound.wait(30):
            self.stop()
            raise AssertionError("imagesync listen did not start:\n" + self.log())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if " listen on " in line and not self._bound.is_set():
                self.url = line.split(" listen on ", 1)[1].split(";", 1)[0]
                self._bound.set()

    def stop(self) -> int:
        """SIGTERM, then the exit status (killed after 30 s: a listener must stop well within that)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("imagesync listen did not stop on SIGTERM:\n" + self.log()) from None
        return self.process.returncode

    def log(self) -> str:
        return "\n".join(self.lines)

    def post(self, path: str, body: bytes, *, sign: bool = True, headers: dict[str, str] | None = None,
             ) -> tuple[int, dict[str, Any]]:
        """POST ``body``, signed with the test secret unless ``sign`` is False; (status, JSON answer)."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        if sign:
            sent["X-Imagesync-Signature"] = signature(SECRET, body)
        return self._ask(urllib.request.Request(self.url + path, data=body, headers=sent, method="POST"))

    def sync(self, source: str) -> tuple[int, dict[str, Any]]:
        return self.post("/v1/sync", json.dumps({"source": source}).encode())

    def health(self) -> dict[str, Any]:
        status, answer = self._ask(urllib.request.Request(self.url + "/healthz"))
        assert status == 200, answer
        return answer

    def wait_for_run(self, count: int = 1, timeout: float = 60) -> list[str]:
        """Wait until ``count`` event-started runs have finished (by the log); their "finished" lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.finished()
            if len(done) >= count:
                return done
            time.sleep(0.2)
        raise AssertionError(f"no {count} finished run(s) within {timeout} s:\n" + self.log())

    def finished(self) -> list[str]:
        return [line for line in list(self.lines) if "listen sync sources=" in line and " finished exit=" in line]

    @staticmethod
    def _ask(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
