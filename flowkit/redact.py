"""Scrub secrets from text before flowkit writes it anywhere (logs, reports, error lines).

Three kinds of secret are replaced by ``[REDACTED]``: the values of environment variables whose
names say they are secret (``*API_KEY*``, ``*TOKEN*``, ``*SECRET*``), credentials in
``Authorization`` headers and ``key=value`` query strings, and keys with a well-known shape
(``sk-...``, GitHub, Hugging Face, AWS access key ids).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

MASK = "[REDACTED]"

_SECRET_NAME = re.compile(r"API_?KEY|TOKEN|SECRET", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter values ("1", "true") would blank out ordinary text

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / "authorization": "Basic abc" / Bearer abc on its own
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)[^\s\"',;]+"
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), rf"\1 {MASK}"),
    (re.compile(r"(?i)\b(api[_-]?key|access[_-]?token|token|secret)=[^&\s\"']+"), rf"\1={MASK}"),
    # credentials in a URL: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@:\"']+(?::[^/\s@\"']*)?@"), rf"\1{MASK}@"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables whose names mark them as secrets, longest first."""
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Return ``text`` with every secret it contains replaced by ``[REDACTED]``."""
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
