"""The local OpenAI-compatible server, driven over real HTTP by the openai SDK."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError, InternalServerError, NotFoundError, OpenAI
from pydantic import BaseModel, ValidationError

from nodes.llm.testing import LLMServer, ServerConfig

MESSAGES: Any = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "name a colour"},
]


def sync_client(server: LLMServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def raw_request(
    server: LLMServer, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


async def test_completion_is_deterministic_and_well_formed(llm_server: LLMServer) -> None:
    async with AsyncOpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0) as client:
        first = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        again = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        other = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "name a number"}]
        )
    content = first.choices[0].message.content
    assert content is not None
    assert content == again.choices[0].message.content
    assert content.endswith("name a colour")
    assert other.choices[0].message.content != content
    assert first.object == "chat.completion"
    assert first.model == "gpt-test"
    assert first.choices[0].finish_reason == "stop"
    assert first.id != again.id
    usage = first.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sync_client_and_models_list(llm_server: LLMServer) -> None:
    client = sync_client(llm_server)
    reply = client.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert [m.id for m in client.models.list()] == ["flowkit-fake"]


@pytest.mark.llm_server(models=["alpha", "beta"])
def test_marker_configures_the_fixture(llm_server: LLMServer) -> None:
    assert [m.id for m in sync_client(llm_server).models.list()] == ["alpha", "beta"]


def test_unknown_route_is_an_openai_style_404(llm_server: LLMServer) -> None:
    status, _, body = raw_request(llm_server, "GET", "/v1/nope")
    assert status == 404
    assert body["error"]["message"] == "Invalid URL (GET /v1/nope)"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(NotFoundError):
        sync_client(llm_server).get("/nope", cast_to=object)


def test_bad_bodies_are_400(llm_server: LLMServer) -> None:
    status, _, body = raw_request(llm_server, "POST", "/v1/chat/completions", {"model": "m"})
    assert status == 400
    assert "messages" in body["error"]["message"]
    with pytest.raises(BadRequestError):
        sync_client(llm_server).chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"X-Flowkit-Fault": "teapot"}
        )


def test_unreadable_http_gets_400_and_close(llm_server: LLMServer) -> None:
    with socket.create_connection(("127.0.0.1", llm_server.port), timeout=10) as sock:
        sock.sendall(b"not http\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):  # the server closes the connection after answering
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert json.loads(body)["error"]["message"] == "malformed request line"


def test_keep_alive_reuses_one_connection(llm_server: LLMServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", llm_server.port, timeout=10)
    try:
        conn.request("GET", "/v1/models")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request("GET", "/v1/models")
        second = conn.getresponse()
        second.read()
        assert first.status == second.status == 200
        assert first.getheader("Connection") == "keep-alive"
        assert conn.sock is sock
    finally:
        conn.close()


class Verdict(BaseModel):
    label: str
    score: int
    tags: list[str]
    detail: Detail | None


class Detail(BaseModel):
    reason: str


Verdict.model_rebuild()


def test_structured_output_parses_with_the_sdk(llm_server: LLMServer) -> None:
    client = sync_client(llm_server)
    completion = client.chat.completions.parse(
        model="m", messages=MESSAGES, response_format=Verdict
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Verdict)
    assert parsed.label == "name a colour"
    assert parsed.detail == Detail(reason="name a colour")

    reply = client.chat.completions.create(
        model="m", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content or "")["echo"] == "name a colour"


def test_streaming_yields_the_same_text(llm_server: LLMServer) -> None:
    client = sync_client(llm_server)
    whole = client.chat.completions.create(model="m", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage == whole.usage


def test_custom_responder_and_its_failures() -> None:
    def responder(body: dict[str, Any]) -> str:
        if body["model"] == "broken":
            raise RuntimeError("no reply")
        return f"{len(body['messages'])} messages"

    with LLMServer(responder=responder) as server:
        client = sync_client(server)
        reply = client.chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].message.content == "2 messages"
        with pytest.raises(InternalServerError, match="no reply"):
            client.chat.completions.create(model="broken", messages=MESSAGES)


def test_records_keep_bodies_and_headers_without_the_api_key(llm_server: LLMServer) -> None:
    sync_client(llm_server).chat.completions.create(
        model="m", messages=MESSAGES, extra_headers={"X-Trace": "trace-42"}
    )
    (record,) = llm_server.stats.requests
    assert record.body["messages"] == MESSAGES
    assert record.headers["x-trace"] == "trace-42"
    assert record.headers["authorization"] == "***"
    assert record.status == 200
    assert record.end_monotonic is not None and record.end_time is not None
    assert record.start_time <= record.end_time


def test_stats_and_control_endpoints(llm_server: LLMServer) -> None:
    client = sync_client(llm_server)
    client.chat.completions.create(model="m", messages=MESSAGES)
    status, _, stats = raw_request(llm_server, "GET", "/_stats")
    assert status == 200
    assert stats["status_counts"] == {"200": 1}
    assert stats["requests"][0]["body"]["messages"] == MESSAGES

    status, _, body = raw_request(llm_server, "POST", "/_control", {"next_faults": ["500"]})
    assert status == 200 and body["config"]["next_faults"] == ["500"]
    with pytest.raises(InternalServerError):
        client.chat.completions.create(model="m", messages=MESSAGES)

    status, _, _ = raw_request(llm_server, "POST", "/_control", {"reset": True})
    assert status == 200
    assert llm_server.stats.requests == []
    assert llm_server.stats.peak_in_flight == 0

    status, _, body = raw_request(llm_server, "POST", "/_control", {"latency_ms": -1})
    assert status == 400 and "latency_ms" in body["error"]["message"]
    status, _, _ = raw_request(llm_server, "POST", "/_control", {"no_such_field": 1})
    assert status == 400


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        ServerConfig(fail_rate_429=0.6, fail_rate_500=0.6)
    with pytest.raises(ValidationError):
        ServerConfig(latency_ms=100, latency_max_ms=50)


async def test_serves_on_the_running_loop() -> None:
    async with (
        LLMServer() as server,
        AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client,
    ):
        reply = await client.chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].message.content
        assert server.stats.status_counts == {200: 1}
