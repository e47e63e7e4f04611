"""Durable LLM calls for code outside a flow's checkpoints: each reply written as it lands.

Inside ``with journaled(CallJournal(path)):``, every ``LLMClient`` call first looks for a
stored reply to the same request (the same model, messages and options; the n-th such call
gets the n-th stored reply) and returns it without calling or billing; a new reply is
appended to the file as one JSON line the moment it arrives, so a process killed at any
point loses only the calls in flight. Rerunning deterministic code (gepa's engine with its
seed, say) with the same journal replays every finished call and continues from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TextIO

from nodes.llm.provider import ChatRequest, Reply


class CallJournal:
    """Replies by request, read from and appended to a JSON-lines file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stored: dict[str, deque[Reply]] = {}
        self.replayed = 0
        self.recorded = 0
        torn = False
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    data = json.loads(line)
                    reply = Reply(data["text"], int(data["prompt"]), int(data["completion"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
                self._stored.setdefault(data["key"], deque()).append(reply)
        self._file: TextIO | None = self.path.open("a", encoding="utf-8", buffering=1)
        if torn:
            self._file.write("\n")  # end the line a kill cut short, so the next one is whole

    @property
    def stored(self) -> int:
        """Replies still waiting to be replayed."""
        return sum(len(q) for q in self._stored.values())

    def replay(self, request: ChatRequest) -> Reply | None:
        """The next stored reply to ``request``, or None."""
        waiting = self._stored.get(request_key(request))
        if not waiting:
            return None
        self.replayed += 1
        return waiting.popleft()

    def record(self, request: ChatRequest, reply: Reply) -> None:
        """Append ``reply`` to the file, as one line."""
        if self._file is None:
            return
        line = {
            "key": request_key(request),
            "text": reply.text,
            "prompt": reply.prompt_tokens,
            "completion": reply.completion_tokens,
        }
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.recorded += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def request_key(request: ChatRequest) -> str:
    text = json.dumps(request.body(), sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_current: ContextVar[CallJournal | None] = ContextVar("nodes_llm_journal", default=None)


@contextlib.contextmanager
def journaled(journal: CallJournal) -> Iterator[CallJournal]:
    """Calls inside the block (and tasks started in it) replay from and record to ``journal``."""
    token = _current.set(journal)
    try:
        yield journal
    finally:
        _current.reset(token)


def current_journal() -> CallJournal | None:
    return _current.get()
