"""Text from lists and servers made safe to show: one line, control characters visible, never an encoding error.

Identifiers, titles, versions, DNs and server messages are chosen by publishers and servers. Printed raw, a newline
in one forges a log record or a report line, an escape sequence drives the operator's terminal, a bidi override
reorders what is read, and a lone surrogate (a valid ``\\ud800`` escape in JSON) makes the UTF-8 encoder raise.
Every text log record and report line goes through :func:`one_line`, JSON output through :func:`json_text`.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, bidi embeddings, overrides and isolates,
# and lone surrogates.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# What json.dumps(ensure_ascii=False) leaves raw (it escapes only C0) though a line reader would split at it or
# an encoder raise: DEL, C1 controls (NEL is a line break), the separators, lone surrogates.
_JSON_RAW = re.compile(r"[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def one_line(text: str) -> str:
    """``text`` with every control, line or paragraph separator, bidi control and lone surrogate written as a
    visible escape (``\\n``, ``\\x1b``, ``\\u2028``, ``\\ud800``). Raises nothing."""
    return _UNSAFE.sub(_visible, text)


def json_text(dumped: str) -> str:
    """Output of ``json.dumps(..., ensure_ascii=False)`` with those characters as ``\\uXXXX``
    escapes: the same JSON value, always one line, always encodable. Raises nothing."""
    # These characters can only occur inside JSON strings, where the escape means the same character.
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)
