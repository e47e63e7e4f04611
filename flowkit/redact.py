"""Scrub secrets from text before flowkit writes it anywhere (logs, reports, error lines).

Four kinds of secret are replaced by ``[REDACTED]``: values registered with ``add_secret``
(the API keys and URL passwords a configuration holds, whatever their source), the values of
environment variables whose names say they are secret (``*API_KEY*``, ``*TOKEN*``,
``*SECRET*``), credentials in ``Authorization`` headers, ``key=value`` query strings and URLs
(``scheme://user:password@host``), and keys with a well-known shape (``sk-...``, GitHub,
Hugging Face, AWS access key ids).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

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


_registered: set[str] = set()


def add_secret(value: str | None) -> None:
    """Count ``value`` (an API key, a password) as a secret in this process from now on.

    Values shorter than six characters are not masked on their own (they would blank out
    ordinary words); they are still masked where they appear as credentials (URLs, headers).
    """
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The registered secrets and the values of the environment variables whose names mark
    them as secrets, longest first."""
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN
    }
    values |= _registered
    return sorted(values, key=len, reverse=True)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its ``user:password@`` part, and the user and password it held."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host)), parts.username, parts.password


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Return ``text`` with every secret it contains replaced by ``[REDACTED]``."""
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
