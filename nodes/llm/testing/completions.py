"""Reply text and OpenAI-shaped bodies for the test server's chat completions."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from nodes.llm.messages import estimate_tokens, last_user_text, message_text

Responder = Callable[[dict[str, Any]], str]
"""Turns a chat completion request body into the assistant's reply text."""

DEFAULT_MODEL = "flowkit-fake"


def default_responder(body: dict[str, Any]) -> str:
    """Deterministic reply: a digest of the messages plus an echo of the last user message.

    With ``response_format`` ``json_object`` it answers a JSON object; with ``json_schema``
    a JSON value shaped by the schema, so structured-output parsing works end to end.
    """
    echo = last_user_text(body.get("messages", []))
    digest = request_digest(body)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(sample_for_schema(schema, echo))
    if response_format.get("type") == "json_object":
        return json.dumps({"echo": echo, "digest": digest})
    return f"[{digest}] {echo}"


def request_digest(body: dict[str, Any]) -> str:
    """Short stable hash of the request's messages."""
    canonical = json.dumps(body.get("messages", []), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def sample_for_schema(schema: dict[str, Any], text: str, root: dict[str, Any] | None = None) -> Any:
    """A small value that satisfies common JSON Schema shapes (objects, enums, refs)."""
    root = root if root is not None else schema
    if ref := schema.get("$ref"):
        target = root
        for key in ref.removeprefix("#/").split("/"):
            target = target[key]
        return sample_for_schema(target, text, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_for_schema(schema[key][0], text, root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: sample_for_schema(sub, text, root) for name, sub in properties.items()}
    if kind == "array":
        return [sample_for_schema(schema.get("items", {}), text, root)]
    scalars = {"string": text, "integer": len(text), "number": float(len(text)), "boolean": True}
    return scalars.get(kind)


def chat_completion(body: dict[str, Any], text: str, *, id: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object with the given reply text."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(body, text),
    }


def usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = estimate_tokens(" ".join(message_text(m) for m in body.get("messages", [])))
    completion = estimate_tokens(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_completion_stream(body: dict[str, Any], text: str, *, id: str, created: int) -> bytes:
    """The same reply as server-sent ``chat.completion.chunk`` events, one per word."""
    base = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.get("model") or DEFAULT_MODEL,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in re.findall(r"\s*\S+\s*|\s+", text)]
    chunks.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage(body, text)})
    events = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(events).encode()


def malformed_completion(*, id: str) -> bytes:
    """A chat completion body cut off mid-string: not valid JSON."""
    return f'{{"id": "{id}", "object": "chat.completion", "choices": [{{"message": {{"co'.encode()
