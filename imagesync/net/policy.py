"""How patient and how trusting an HTTP fetch is: shared by list fetches, registry requests and image downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FetchPolicy:
    """How patient and how trusting a fetch is."""

    connect_timeout: float = 10.0
    timeout: float = 60.0  # read timeout: seconds without progress
    retries: int = 5  # extra attempts after the first, on connection errors, 429 and 5xx
    backoff: float = 1.0  # base seconds of the exponential backoff
    max_delay: float = 300.0  # longest wait between attempts, a server's Retry-After included
    max_bytes: int = 32 * 1024 * 1024
    ca_dir: Path | None = None  # grid CAs trusted in addition to the system store
