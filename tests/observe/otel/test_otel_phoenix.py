"""Runs exported to a real tracing backend (Arize Phoenix) and read back through its API.

A translation run and a MedMCQA run call local OpenAI-compatible servers; each run goes to
Phoenix under a project of its own. What Phoenix stored is then checked: as many spans as the
run exported, one tree (one root, every parent present, LLM calls under exec calls under
nodes), the GenAI token attributes adding up to the run's own usage, and no planted key.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.otel import OtelExport
from flows.medmcqa import Experiment, QuestionFile, build_flow, sample_path
from flows.medmcqa.run import corpus_counts, hashed_embedder
from flows.translation import translate_document
from nodes.llm import LLMSettings
from nodes.llm.testing import LLMServer

KEY = "fkotelplanted5Wq8Zr2"  # no well-known key shape: found only as a configured secret


def kinds(spans: list[dict[str, Any]]) -> Counter[str]:
    return Counter(s["name"].split(" ")[0] for s in spans)


def check_tree(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One root (the run); every other span's parent is stored too; LLM calls sit under exec
    calls, exec calls under nodes, nodes under flows or the run. Returns spans by id."""
    by_id = {s["context"]["span_id"]: s for s in spans}
    assert len(by_id) == len(spans)
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"].split(" ")[0] for r in roots] == ["run"]
    assert len({s["context"]["trace_id"] for s in spans}) == 1
    for s in spans:
        if s["parent_id"] is None:
            continue
        parent = by_id[s["parent_id"]]["name"].split(" ")[0]
        kind = s["name"].split(" ")[0]
        expected = {
            "flow": {"run", "flow"},
            "node": {"run", "flow"},
            "exec": {"node"},
            "chat": {"exec"},
            "wait": {"exec", "node"},
        }[kind]
        assert parent in expected, (s["name"], parent)
    return by_id


def tokens(spans: list[dict[str, Any]], key: str) -> int:
    return sum(int(s["attributes"].get(key, 0)) for s in spans if s["name"].startswith("chat"))


def test_a_translation_run_in_phoenix(
    phoenix: Any, llm_server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=fk-translation")
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\n" + "\n\n".join(f"Paragraph {i} to translate." for i in range(6)))
    export = OtelExport(endpoint=phoenix.url)
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)}, otel=export, progress=False)
    settings = LLMSettings(provider="openai", base_url=llm_server.base_url, api_key=KEY, model="m")
    result = translate_document(
        doc, ["French", "German"], tmp_path / "out", settings=settings, runner=runner, max_chars=60
    )
    assert not result.failed
    stats = export.last
    assert stats is not None and stats.lost == 0 and stats.exported == stats.spans

    spans = phoenix.wait_for("fk-translation", stats.exported)
    assert len(spans) == stats.exported
    check_tree(spans)
    count = kinds(spans)
    answered = llm_server.stats.status_counts[200]
    assert count["chat"] == answered > 2
    assert count["run"] == 1 and count["node"] == 3
    info = runner.last_run
    assert info is not None
    usage = Counter[str]()
    for node in info.nodes.values():
        usage.update(node.usage)
    assert tokens(spans, "gen_ai.usage.input_tokens") == usage["prompt_tokens"] > 0
    assert tokens(spans, "gen_ai.usage.output_tokens") == usage["completion_tokens"] > 0
    chats = [s for s in spans if s["name"].startswith("chat")]
    assert {s["attributes"]["gen_ai.system"] for s in chats} == {"openai"}
    assert {s["attributes"]["gen_ai.request.model"] for s in chats} == {"m"}
    execs = [s for s in spans if s["name"].startswith("exec TranslateChunks")]
    assert sorted(s["attributes"]["flowkit.item.index"] for s in execs) == list(range(len(execs)))
    assert {s["attributes"]["flowkit.outcome"] for s in execs} == {"ok"}
    assert KEY not in json.dumps(spans)


class Refuse(BaseHTTPRequestHandler):
    """Refuses every call with a 401 that repeats the key it was sent, as careless proxies do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        auth = self.headers.get("authorization", "")
        body = json.dumps(
            {"error": {"message": f"Incorrect API key provided: {auth}", "code": "invalid"}}
        ).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_medmcqa_run_in_phoenix(
    phoenix: Any, tmp_path: Path, refusing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local model answers; the remote one refuses, echoing the key: failed items are in
    the trace as errors, with the key redacted."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=fk-medmcqa")
    questions = list(QuestionFile(sample_path(), limit=3))
    with LLMServer() as local:
        experiment = Experiment(
            LLMSettings(provider="openai", base_url=local.base_url, api_key="test", model="lm"),
            LLMSettings(
                provider="openai", base_url=refusing, api_key=KEY, model="rm", max_attempts=1
            ),
            hashed_embedder(questions),
            corpus=corpus_counts(questions),
            scenarios=("1", "4", "3.2"),
            epsilons=(1.0,),
        )
        export = OtelExport(endpoint=phoenix.url)
        runner = fk.Runner(otel=export, progress=False)
        shared: dict[str, Any] = {"questions": questions, "output": tmp_path}
        runner.run(build_flow(experiment, question_concurrency=2), shared)
        answered = local.stats.status_counts[200]
    stats = export.last
    assert stats is not None and stats.lost == 0
    spans = phoenix.wait_for("fk-medmcqa", stats.exported)
    assert len(spans) == stats.exported
    by_id = check_tree(spans)
    count = kinds(spans)
    assert count["run"] == 1
    # one pass of the sub-flow per question, each with its own node spans and calls
    passes = [s for s in spans if s["name"].startswith("flow ") and s["parent_id"] is not None]
    assert len(passes) >= len(questions)
    chats = [s for s in spans if s["name"].startswith("chat")]
    ok_chats = [s for s in chats if s["status_code"] != "ERROR"]
    assert len(ok_chats) == answered > 0
    info = runner.last_run
    assert info is not None
    prompt = sum(n.usage.get("prompt_tokens", 0) for n in info.nodes.values())
    assert tokens(spans, "gen_ai.usage.input_tokens") == prompt > 0
    failed = [s for s in spans if s["attributes"].get("flowkit.outcome") == "failed"]
    assert failed and all(s["status_code"] == "ERROR" for s in failed)
    assert any("Incorrect API key provided" in s["status_message"] for s in failed)
    for s in failed:  # a failed exec call's LLM tries are its children, marked failed too
        assert by_id[s["parent_id"]]["name"].startswith("node ")
    assert KEY not in json.dumps(spans)
