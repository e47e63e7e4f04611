"""OpenTelemetry export: the span tree a run makes, its attributes, waits, failures, secrets,
and an export that never slows or fails the run.

Spans are read from OpenTelemetry's own in-memory exporter, or off the wire from a local
HTTP server that takes OTLP/HTTP posts as a collector does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flowkit as fk
from flowkit.errors import ConfigError, FlowkitWarning
from flowkit.events import CallStarted, Event, Observer
from flowkit.otel import OtelExport
from nodes.llm import LLMClient, LLMSettings
from nodes.llm.testing import LLMServer

KEY = "fkotelsecret4Hn7Pq1"


def run(flow: fk.BaseNode, shared: Any = None, **options: Any) -> tuple[list[ReadableSpan], Any]:
    memory = InMemorySpanExporter()
    export = OtelExport(exporter=memory, **options)
    runner = fk.Runner(otel=export, progress=False)
    runner.run(flow, {} if shared is None else shared)
    return list(memory.get_finished_spans()), export


def kind(span: ReadableSpan) -> str:
    return span.name.split(" ")[0]


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    (parent,) = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def children(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]


class Ask(fk.AsyncParallelBatchNode):
    """One LLM call per item."""

    def __init__(self, settings: LLMSettings, n: int, **options: Any) -> None:
        super().__init__(**options)
        self.llm, self.n = LLMClient(settings, name="ask"), n

    async def prep_async(self, shared: Any) -> list[str]:
        return [f"question {i}" for i in range(self.n)]

    async def exec_async(self, item: str) -> str:
        return await self.llm.chat(item)


class Count(fk.AsyncNode):
    async def prep_async(self, shared: Any) -> int:
        return len(shared)

    async def exec_async(self, prep_res: int) -> int:
        return prep_res


def test_a_run_is_one_tree_of_run_flow_node_exec_and_llm_call(llm_server: LLMServer) -> None:
    settings = LLMSettings(provider="openai", base_url=llm_server.base_url, api_key="t", model="m")
    flow = fk.AsyncFlow(start=Ask(settings, 4, name="ask"))
    flow.start_node >> Count(name="count")
    spans, export = run(flow)
    count = Counter(map(kind, spans))
    assert count - Counter(wait=count["wait"]) == {
        "run": 1,
        "flow": 1,
        "node": 2,
        "exec": 5,
        "chat": 4,
    }
    for wait in (s for s in spans if kind(s) == "wait"):  # calls that found no client yet
        assert wait.name == "wait LLM client set-up"
        assert parent_of(wait, spans).name.startswith("exec ask #")  # type: ignore[union-attr]
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "run AsyncFlow" and root.attributes["flowkit.status"] == "done"
    assert len({s.context.trace_id for s in spans}) == 1
    (flow_span,) = children(root, spans)
    assert flow_span.name == "flow AsyncFlow"
    assert [s.name for s in children(flow_span, spans)] == ["node ask", "node count"]
    for chat in (s for s in spans if kind(s) == "chat"):
        call = parent_of(chat, spans)
        assert call is not None and call.name.startswith("exec ask #")
        node = parent_of(call, spans)
        assert node is not None and node.name == "node ask"
        a = chat.attributes
        assert a["gen_ai.system"] == "openai" and a["gen_ai.request.model"] == "m"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert call.start_time <= chat.start_time <= chat.end_time <= call.end_time
    calls = sorted((s for s in spans if s.name.startswith("exec ask")), key=lambda s: s.name)
    assert [c.attributes["flowkit.item.index"] for c in calls] == [0, 1, 2, 3]
    for c in calls:
        a = c.attributes
        assert a["flowkit.node.path"] == "AsyncFlow/ask" and a["flowkit.attempt"] == 1
        assert a["flowkit.executor"] == "async" and a["flowkit.outcome"] == "ok"
    assert export.last.spans == export.last.exported == len(spans) and export.last.lost == 0


class Slow(fk.AsyncParallelBatchNode):
    """Holds the run's "api" limiter inside exec for a while per item."""

    async def prep_async(self, shared: Any) -> range:
        return range(3)

    async def exec_async(self, item: int) -> int:
        limiter = fk.current_limiter("api")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.03)
        finally:
            limiter.release()
        return item


def test_waits_inside_a_call_are_child_spans_named_for_the_limiter() -> None:
    memory = InMemorySpanExporter()
    runner = fk.Runner(
        limits={"api": fk.Limit(max_concurrency=1)},
        otel=OtelExport(exporter=memory),
        progress=False,
    )
    runner.run(Slow(), {})
    spans = list(memory.get_finished_spans())
    waits = [s for s in spans if kind(s) == "wait"]
    assert len(waits) == 2  # three calls, one slot: two of them waited
    for w in waits:
        assert w.name == "wait limiter api" and w.attributes["flowkit.limiter"] == "api"
        call = parent_of(w, spans)
        assert call is not None and kind(call) == "exec"
        assert call.attributes["flowkit.item.index"] == w.attributes["flowkit.item.index"]
        assert (w.end_time - w.start_time) / 1e9 >= 0.02


class Flaky(fk.AsyncParallelBatchNode):
    """Item 1 fails once then succeeds; item 2 always fails, with the key in its message."""

    on_error = "collect"

    async def prep_async(self, shared: Any) -> range:
        return range(3)

    async def exec_async(self, item: int) -> int:
        if item == 1 and self.cur_retry == 0:
            raise TimeoutError("slow upstream")
        if item == 2:
            raise PermissionError(f"refused key {KEY}")
        return item


def test_retries_and_failures_show_each_try_its_outcome_and_the_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWKIT_TEST_API_KEY", KEY)  # a secret by its name
    spans, _ = run(Flaky(name="flaky", max_retries=2, wait=0.01))
    calls = {
        (s.attributes["flowkit.item.index"], s.attributes["flowkit.attempt"]): s
        for s in spans
        if kind(s) == "exec"
    }
    assert sorted(calls) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2)]
    outcome = {k: s.attributes["flowkit.outcome"] for k, s in calls.items()}
    assert outcome == {
        (0, 1): "ok",
        (1, 1): "retried",
        (1, 2): "ok",
        (2, 1): "retried",
        (2, 2): "failed",
    }
    failed = calls[(2, 2)]
    assert failed.status.status_code.name == "ERROR"
    assert failed.attributes["error.type"] == "PermissionError"
    assert failed.status.description == "PermissionError: refused key [REDACTED]"
    assert calls[(1, 1)].status.description == "TimeoutError: slow upstream"
    backoffs = [s for s in spans if s.name == "wait retry backoff"]
    assert sorted(b.attributes["flowkit.item.index"] for b in backoffs) == [1, 2]
    assert all(parent_of(b, spans).name == "node flaky" for b in backoffs)  # type: ignore[union-attr]
    assert KEY not in dump(spans)


def dump(spans: list[ReadableSpan]) -> str:
    return "\n".join(s.to_json() for s in spans)


class Leaky(fk.AsyncNode):
    """Puts a secret in an operation's attributes, its name and an error."""

    async def exec_async(self, prep_res: Any) -> str:
        with fk.operation(f"lookup {KEY}", token=KEY, url=f"https://user:{KEY}@host/x"):
            pass
        return "ok"


def test_no_secret_reaches_a_span_name_attribute_or_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fk.redact.add_secret(KEY)  # e.g. an API key from a configuration
    spans, _ = run(Leaky(name="leaky"))
    (op,) = [s for s in spans if s.name.startswith("lookup")]
    assert op.name == "lookup [REDACTED]" and op.attributes["token"] == "[REDACTED]"
    assert KEY not in dump(spans)


class Noop(fk.AsyncParallelBatchNode):
    max_concurrency = 50

    async def prep_async(self, shared: Any) -> range:
        return range(shared["n"])

    async def exec_async(self, item: int) -> int:
        return item


class CallCounter(Observer):
    """Counts the CallStarted events the run builds; wants as few as the exporter."""

    def __init__(self, bound: int) -> None:
        self.calls_per_node = bound
        self.seen = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, CallStarted):
            self.seen += 1


def test_past_item_spans_calls_cost_no_event_and_are_counted_on_the_run() -> None:
    memory = InMemorySpanExporter()
    export = OtelExport(exporter=memory, item_spans=100)
    counter = CallCounter(100)
    runner = fk.Runner(otel=export, on_event=counter, progress=False)
    assert runner.run(fk.AsyncFlow(start=Noop(name="noop")), {"n": 3000}) is None
    spans = list(memory.get_finished_spans())
    assert sum(1 for s in spans if kind(s) == "exec") == 100
    assert counter.seen == 100  # the runner built no event for the other 2900 calls
    assert export.last.untraced_calls == 2900
    (node,) = [s for s in spans if s.name == "node noop"]
    assert node.attributes["flowkit.batch.items"] == 3000
    (root,) = [s for s in spans if s.parent is None]
    (summary,) = [e for e in root.events if e.name == "node noop"]
    assert summary.attributes["flowkit.items"] == 3000
    assert summary.attributes["flowkit.calls.traced"] == 100


class Pass(fk.AsyncParallelBatchFlow):
    async def prep_async(self, shared: Any) -> list[dict[str, int]]:
        return [{"n": n} for n in (2, 3, 4)]


class PerPass(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared: Any) -> range:
        return range(self.params["n"])

    async def exec_async(self, item: int) -> int:
        await asyncio.sleep(0.01)  # the three passes overlap
        return item


def test_each_pass_of_a_parallel_batch_flow_holds_its_own_calls() -> None:
    spans, _ = run(Pass(start=PerPass(name="per_pass"), max_concurrency=3))
    nodes = [s for s in spans if s.name == "node per_pass"]
    assert len(nodes) == 3
    assert sorted(len(children(n, spans)) for n in nodes) == [2, 3, 4]
    for n in nodes:
        assert n.attributes["flowkit.batch.items"] == len(children(n, spans))


class Collector(BaseHTTPRequestHandler):
    """Takes OTLP/HTTP posts as a collector does, after ``delay`` seconds."""

    posts: list[tuple[str, dict[str, str], bytes]] = []
    delay = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        time.sleep(self.delay)
        Collector.posts.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.posts, Collector.delay = [], 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def posted_spans() -> list[Any]:
    out = []
    for _, _, body in Collector.posts:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                out += list(ss.spans)
    return out


def test_the_standard_variables_choose_the_endpoint_and_headers(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"api_key={KEY}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-batch")
    runner = fk.Runner(otel=True, progress=False)
    runner.run(fk.AsyncFlow(start=Noop(name="noop")), {"n": 5})
    assert {path for path, _, _ in Collector.posts} == {"/v1/traces"}
    assert all(headers.get("api_key") == KEY for _, headers, _ in Collector.posts)
    spans = posted_spans()
    assert Counter(s.name.split(" ")[0] for s in spans) == {
        "run": 1,
        "flow": 1,
        "node": 1,
        "exec": 5,
    }
    request = ExportTraceServiceRequest.FromString(Collector.posts[0][2])
    resource = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "my-batch"


def test_a_full_queue_drops_spans_counts_them_and_says_so_once(collector: str) -> None:
    Collector.delay = 0.3  # a slow collector: the queue fills while a batch is in flight
    export = OtelExport(endpoint=collector, max_queue=20, batch_size=10, flush_timeout_s=5)
    runner = fk.Runner(otel=export, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.run(fk.AsyncFlow(start=Noop(name="noop")), {"n": 500})
    stats = export.last
    assert stats is not None and stats.dropped > 0
    assert stats.exported == len(posted_spans())
    assert stats.spans == stats.exported + stats.dropped + stats.unsent + stats.failed
    lines = [str(w.message) for w in caught if issubclass(w.category, FlowkitWarning)]
    assert len(lines) == 1
    assert f"lost {stats.lost} of {stats.spans} spans" in lines[0]
    assert f"{stats.dropped} dropped because the export queue was full" in lines[0]


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_endpoint_loses_spans_but_never_the_run() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    export = OtelExport(endpoint=url, flush_timeout_s=0.5)
    runner = fk.Runner(otel=export, progress=False)
    shared: dict[str, Any] = {"n": 50}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.run(fk.AsyncFlow(start=Noop(name="noop")), shared)
    assert runner.last_run is not None and runner.last_run.ok
    stats = export.last
    assert stats is not None and stats.exported == 0 and stats.lost == stats.spans > 0
    (line,) = [str(w.message) for w in caught if issubclass(w.category, FlowkitWarning)]
    assert f"lost {stats.spans} of {stats.spans} spans" in line


@pytest.mark.parametrize("value", ["localhost:4318", 42, "ftp://host"])
def test_a_bad_otel_option_is_refused_before_the_run(value: Any) -> None:
    with pytest.raises(ConfigError, match="otel"):
        fk.Runner(otel=value)


def test_an_operation_outside_a_run_or_unobserved_only_hands_back_its_attributes() -> None:
    with fk.operation("step", a=1) as attrs:
        attrs["b"] = 2
    assert attrs == {"a": 1, "b": 2}

    seen: list[Event] = []

    class Step(fk.AsyncNode):
        async def exec_async(self, prep_res: Any) -> None:
            with fk.operation("step", a=1):
                pass

    fk.Runner(progress=False, detect_blocking=None).run(Step(), {})
    fk.Runner(progress=False, on_event=seen.append).run(Step(), {})
    assert [e.kind for e in seen if e.kind == "operation"] == ["operation"]


FLOW = """
import flowkit as fk


class Noop(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return range(3)

    async def exec_async(self, item):
        return item


def flow():
    return fk.AsyncFlow(start=Noop())
"""


def flowkit_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (cwd / "myflows.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), *sys.path])
    return subprocess.run(
        [sys.executable, "-m", "flowkit.cli", "run", "myflows:flow", "--no-store", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_flowkit_run_otel_url_exports_the_run(collector: str, tmp_path: Path) -> None:
    done = flowkit_cli(tmp_path, "--no-progress", "--otel", collector)
    assert done.returncode == 0, done.stderr
    assert Counter(s.name.split(" ")[0] for s in posted_spans())["exec"] == 3
    bad = flowkit_cli(tmp_path, "--no-progress", "--otel", "localhost:4318")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "flowkit: error: Runner otel: expected an OTLP/HTTP endpoint URL such as "
        "http://localhost:4318, got 'localhost:4318'"
    ]


def test_with_an_observer_that_wants_every_call_the_export_still_keeps_its_bound() -> None:
    seen: list[Event] = []
    memory = InMemorySpanExporter()
    runner = fk.Runner(
        otel=OtelExport(exporter=memory, item_spans=10), on_event=seen.append, progress=False
    )
    runner.run(fk.AsyncFlow(start=Noop(name="noop")), {"n": 200})
    assert sum(1 for e in seen if isinstance(e, CallStarted)) == 200
    assert sum(1 for s in memory.get_finished_spans() if kind(s) == "exec") == 10
