"""The live view: the report served while a run goes on, as server-sent events, then the final
report; listening on loopback only, and never failing or holding up the run."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.cli import main
from flowkit.errors import ConfigError, FlowkitWarning
from flowkit.report import load_report
from flowkit.report.gauges import BUCKETS, Gauge
from flowkit.report.live import LiveView
from flowkit.serve import DEFAULT_PORT, PageServer, live_address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Events(threading.Thread):
    """Reads ``/events`` of a live view (retrying until it listens) until its final event."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.events: list[tuple[str, str]] = []

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/events")
                response = conn.getresponse()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        name, data = "", []
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and name:
                self.events.append((name, "\n".join(data)))
                if name == "final":
                    return
                name, data = "", []


def live_data(body: str) -> dict:
    found = re.search(r'<script type="application/json" id="live-data">(.*?)</script>', body)
    assert found, body[:500]
    return json.loads(found.group(1).replace("<\\/", "</"))


class Ask(fk.AsyncParallelBatchNode):
    """Takes limiter "llm" inside exec: calls waiting for it must not count as running."""

    async def prep_async(self, shared):
        return range(150)

    async def exec_async(self, item):
        limiter = fk.current_limiter("llm")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.01)
        finally:
            limiter.release()
        return item


class Fetch(fk.AsyncParallelBatchNode):
    max_concurrency = 6
    uses = ("api",)

    async def prep_async(self, shared):
        return range(120)

    async def exec_async(self, item):
        await asyncio.sleep(0.01 + 0.01 * (item % 3))
        if item % 40 == 7:
            raise ValueError(f"item {item} is bad")
        return item


def test_a_run_streams_updates_within_its_limits_then_its_final_report(tmp_path: Path) -> None:
    port = free_port()
    reader = Events(port)
    reader.start()
    fetch = Fetch(on_error="collect")
    fetch >> Ask()
    flow = fk.AsyncFlow(start=fetch, name="live")
    limits = {"api": fk.Limit(max_concurrency=3), "llm": fk.Limit(max_concurrency=4)}
    runner = fk.Runner(limits=limits, live=port, report=tmp_path, progress=False)
    runner.run(flow, {})
    reader.join(10)
    names = [name for name, _ in reader.events]
    assert names[-1] == "final" and names.count("update") >= 3, names
    seen = [live_data(body) for name, body in reader.events if name == "update"]
    assert [d["elapsed"] for d in seen] == sorted(d["elapsed"] for d in seen)
    assert seen[0]["items"] < seen[-1]["items"]  # the page moved on as items finished
    limit = {"api": 3, "llm": 4, "Fetch": 6}
    checked = set()
    for data in seen:
        for s in data["series"]:
            if s["name"] in limit:
                assert s["running"] <= limit[s["name"]] and s["peak"] <= limit[s["name"]], s
                checked.add(s["name"])
    assert checked == {"api", "llm", "Fetch"}
    final = reader.events[-1][1]
    assert final == (tmp_path / "report.html").read_text()  # the page becomes the report
    report = load_report(tmp_path)
    items = sum(n.items for n in report.nodes)
    assert f"{items:,} items · {report.error_count:,} failed" in final
    assert items == 270 and report.error_count == 3
    with pytest.raises(OSError):  # the server is gone with the run
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_nothing_is_rendered_while_no_page_is_open(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = []
    body = LiveView.body
    monkeypatch.setattr(LiveView, "body", lambda self: rendered.append(1) or body(self))
    fk.Runner(limits={"api": fk.Limit(max_concurrency=3)}, live=0, progress=False).run(
        Fetch(on_error="collect"), {}
    )
    assert rendered == []


def test_the_page_is_served_and_answers_only_on_its_own_address() -> None:
    server = PageServer("127.0.0.1", 0, lambda body: f"<main>{body}</main>")
    try:
        server.publish("hello")
        assert server.host == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/")
        ok = conn.getresponse()
        assert (ok.status, ok.read()) == (200, b"<main>hello</main>")
        conn.request("GET", "/", headers={"Host": f"attacker.example:{server.port}"})
        refused = conn.getresponse()
        assert refused.status == 403 and b"<main>" not in refused.read()
    finally:
        server.close()


def test_a_taken_port_warns_once_and_the_run_goes_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = fk.Runner(limits={"api": fk.Limit(max_concurrency=3)}, live=port, progress=False)
        with pytest.warns(FlowkitWarning, match=rf"cannot listen on 127.0.0.1:{port}.*goes on"):
            runner.run(Fetch(on_error="collect"), {})
    assert runner.last_run is not None and runner.last_run.nodes["Fetch"].items == 120


def test_live_true_takes_the_default_port_or_a_free_one() -> None:
    assert live_address(True) == ("127.0.0.1", DEFAULT_PORT, True)
    assert live_address(9000) == ("127.0.0.1", 9000, False)
    assert live_address("0.0.0.0:9001") == ("0.0.0.0", 9001, False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = PageServer("127.0.0.1", port, str, fallback=True)
        try:
            assert server.port not in (port, 0)
        finally:
            server.close()


@pytest.mark.parametrize("bad", ["nope", -1, 70000, "host:", 1.5])
def test_a_bad_live_option_is_refused_before_the_run(bad: object) -> None:
    with pytest.raises(ConfigError, match="Runner live must be"):
        fk.Runner(live=bad)  # type: ignore[arg-type]


def test_a_bad_live_option_is_one_line_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "flowkit:Node", "--live", "port"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--live: expected a port number (0-65535) or HOST:PORT" in err


def test_a_gauge_stays_bounded_and_keeps_each_stretch_peak() -> None:
    gauge = Gauge(0.1)
    for k in range(10 * BUCKETS):
        gauge.sample(k * 0.1, 1, peak=7 if k == 4321 else 0)
    assert len(gauge.run_peak) <= BUCKETS
    assert max(gauge.run_peak) == 7 and gauge.run_peak.count(7) == 1
    series = gauge.series("n", "node", 8, 10 * BUCKETS * 0.1)
    assert set(series.running) == {1.0} and series.peak_running == 7


def test_a_gauge_spreads_a_wait_over_the_stretches_it_covers() -> None:
    gauge = Gauge(1.0)
    gauge.waited(0.5, 3.0)
    gauge.waited(2.0, 2.5)
    assert gauge.wait_area == pytest.approx([0.5, 1.0, 1.5, 0.0])
    assert gauge.series("n", "node", None, 3.5).waiting == pytest.approx([0.5, 1.0, 1.5, 0.0])
