"""One error root for everything imagesync expects to go wrong, and the exit codes of DESIGN §2.

Every subclass carries enough context (which list, image or file) to print a single line an operator can act
on; ``hint`` says what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from imagesync.model import Signer

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_NOTHING_DONE = 3
EXIT_LOCKED = 75


class ImagesyncError(Exception):
    """Root of all expected errors. ``str()`` is the one-line message shown to operators."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, *, subject: str | None = None, hint: str | None = None) -> None:
        # The subject (list name, image id, file) leads the line so cron mail is greppable.
        self.message = message
        self.subject = subject
        self.hint = hint
        super().__init__(self.one_line())

    def about(self, subject: str) -> Self:
        """Name the list/image this error concerns, unless a more precise subject is already set."""
        if self.subject is None:
            self.subject = subject
            self.args = (self.one_line(),)
        return self

    def one_line(self) -> str:
        text = f"{self.subject}: {self.message}" if self.subject else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split())


def brief(exc: BaseException, limit: int = 200) -> str:
    """A library exception as one bounded line, for embedding in our own messages.

    A longer message is cut at the last blank before ``limit`` and ends in `` ...``, so no word is shown half
    (a word longer than the whole limit, such as a URL, is the exception).
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) <= limit:
        return text
    head = text[:limit + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else text[:limit]
    return f"{cut.rstrip(' ,;:')} ..."


class ConfigError(ImagesyncError):
    """The configuration is invalid: names the file, the key and what is allowed."""

    exit_code = EXIT_USAGE


class FetchError(ImagesyncError):
    """A list (or signature) could not be fetched."""


class SignatureError(ImagesyncError):
    """The signature of a list is malformed, invalid or not trusted."""


class MalformedSignatureError(SignatureError):
    """The signed container cannot be understood (not S/MIME, truncated, garbage)."""


class BadSignatureError(SignatureError):
    """The signature does not match the content (tampered content, wrong key)."""


class UntrustedSignerError(SignatureError):
    """The signer's chain does not lead to a trusted CA, or a certificate is expired or unfit."""


class RevokedError(UntrustedSignerError):
    """A certificate in the signer's chain is revoked, or its CRL is missing or stale where required."""


class WeakAlgorithmError(SignatureError):
    """The signature uses an algorithm refused by policy (SHA-1 unless allowed)."""


class EndorserMismatchError(SignatureError):
    """The signer is trusted but is not the endorser the configuration or the list itself names.

    ``signer`` is who did sign (the signature verified), so reports can show it next to the error.
    """

    def __init__(self, message: str, *, signer: Signer | None = None, subject: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, subject=subject, hint=hint)
        self.signer = signer


class ListFormatError(ImagesyncError):
    """The list is not a valid HEPiX image list; the message gives the JSON path of the bad field."""


class ListExpiredError(ImagesyncError):
    """The list's dc:date:expires has passed."""


class RollbackError(ImagesyncError):
    """The list is older than a copy accepted earlier (replay of an old list)."""


class LockHeldError(ImagesyncError):
    """Another imagesync run holds the lock."""

    exit_code = EXIT_LOCKED


class StateError(ImagesyncError):
    """``state.db`` cannot be used, so the run did nothing (exit 3); the file is left exactly as it was.

    Subclasses say why, because each needs another remedy; this class itself covers the rest (an I/O error,
    a full disk, a schema newer than this code).
    """

    exit_code = EXIT_NOTHING_DONE


class StateLockedError(StateError):
    """Another process held a lock on ``state.db`` for longer than the busy timeout (exit 75, try again later).

    Not another imagesync run: those are turned away at once by the run lock (``state_dir/lock``,
    :class:`LockHeldError`), which is the same exit code because the remedy is the same: wait, nothing is wrong.
    It is a process that opened the database itself (an ``sqlite3`` shell in a transaction, a copy job).
    The database is fine, so the message never suggests restoring or moving it.
    """

    exit_code = EXIT_LOCKED


class StateCorruptError(StateError):
    """``state.db`` is not an SQLite database, or is a damaged one (truncated, partly overwritten) (exit 3)."""


class StateAccessError(StateError):
    """``state.db`` or its directory cannot be opened, read or written with this user's rights (exit 3)."""
