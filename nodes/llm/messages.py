"""Chat messages as plain data: a message's text, the last user turn, a rough token count.

Shared by LLM clients (``nodes.llm``) and the fake server (``nodes.llm.testing``).
"""

from __future__ import annotations

import math
from typing import Any


def message_text(message: Any) -> str:
    """Text of one message, whether its content is a string or a list of parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return ""


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def estimate_tokens(text: str) -> int:
    """Rough token count: about four characters a token."""
    return math.ceil(len(text) / 4)
