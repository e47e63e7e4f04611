"""Budgets with a hard stop: once a budget is spent no new call starts, the calls in flight
finish, the run ends with the status "budget", and a resume with a larger one goes on."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.events import Event, RunEnded


class Calls(fk.AsyncParallelBatchNode):
    """Each item is one call under the runner's limiter ``api``; counts starts and ends."""

    uses = ("api",)

    def __init__(self, n: int = 20, **options: Any) -> None:
        super().__init__(**options)
        self.n = n
        self.started: list[int] = []
        self.finished: list[int] = []

    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return list(range(self.n))

    async def exec_async(self, item: int) -> int:
        self.started.append(item)
        for _ in range(5):  # let the other calls in flight move too
            await asyncio.sleep(0)
        self.finished.append(item)
        return item

    async def post_async(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> str:
        shared["results"] = results
        return "done"


def test_no_call_starts_once_the_budget_is_spent_and_calls_in_flight_finish() -> None:
    node = Calls()
    events: list[Event] = []
    runner = fk.Runner(
        limits={"api": fk.Limit(max_concurrency=3, max_calls=7)}, on_event=events.append
    )
    shared: dict[str, Any] = {}
    with pytest.raises(fk.BudgetSpentError, match="budget api: max_calls 7 reached"):
        runner.run(node, shared)
    assert len(node.started) == 7
    assert sorted(node.finished) == sorted(node.started)  # none cut off
    assert "results" not in shared  # post never saw a partial batch
    info = runner.last_run
    assert info is not None and info.status == "budget" and not info.ok
    stats = info.budgets["api"]
    assert (stats.calls, stats.max_calls, stats.spent) == (7, 7, "max_calls 7 reached")
    [ended] = [e for e in events if isinstance(e, RunEnded)]
    assert (ended.status, ended.ok) == ("budget", False)


def test_a_resume_with_a_larger_budget_goes_on_from_what_was_spent(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    first = Calls()
    with pytest.raises(fk.BudgetSpentError):
        limits = {"api": fk.Limit(max_concurrency=2, max_calls=5)}
        fk.Runner(limits=limits, store=store, run_id="r1").run(first, {})
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("budget",)]
        assert db.execute("SELECT COUNT(*) FROM results").fetchone() == (5,)
    again = Calls()  # the same budget: spent already, not one call more
    with pytest.raises(fk.BudgetSpentError):
        limits = {"api": fk.Limit(max_concurrency=2, max_calls=5)}
        fk.Runner(limits=limits, store=store, resume="r1").run(again, {})
    assert again.started == []
    larger = Calls()
    shared: dict[str, Any] = {}
    runner = fk.Runner(
        limits={"api": fk.Limit(max_concurrency=2, max_calls=25)}, store=store, resume="r1"
    )
    assert runner.run(larger, shared) == "done"
    assert shared["results"] == list(range(20))
    assert sorted(larger.started) == list(range(5, 20))  # only what was not done
    assert runner.last_run.budgets["api"].calls == 20  # type: ignore[union-attr]


class Priced(fk.AsyncParallelBatchNode):
    """Takes the limiter ``api`` from inside exec and charges each call's cost, as an LLM
    client does."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls = 0

    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return list(range(10))

    async def exec_async(self, item: int) -> int:
        limiter = fk.current_limiter("api")
        assert limiter is not None
        await limiter.acquire()
        try:
            self.calls += 1
            await asyncio.sleep(0)
        finally:
            limiter.release()
        limiter.charge(tokens=100, cost=0.1)
        return item


def test_a_cost_charged_inside_exec_stops_the_run_at_max_cost() -> None:
    node = Priced()
    runner = fk.Runner(limits={"api": fk.Limit(max_concurrency=1, max_cost=0.35)})
    with pytest.raises(fk.BudgetSpentError, match=r"max_cost \$0.35 reached"):
        runner.run(node, {})
    assert node.calls == 4  # 0.4 >= 0.35 after the fourth: no fifth starts
    stats = runner.last_run.budgets["api"]  # type: ignore[union-attr]
    assert (stats.cost, stats.tokens) == pytest.approx((0.4, 400))


def test_max_tokens_counts_what_callers_charge() -> None:
    node = Priced()
    runner = fk.Runner(limits={"api": fk.Limit(max_concurrency=1, max_tokens=250)})
    with pytest.raises(fk.BudgetSpentError, match="max_tokens 250 reached"):
        runner.run(node, {})
    assert node.calls == 3


class Other(Calls):
    uses = ("other",)


def test_the_runs_budget_counts_every_limiter() -> None:
    a, b = Calls(n=4, name="a"), Other(n=4, name="b")
    a - "done" >> b
    runner = fk.Runner(
        limits={"api": fk.Limit(max_concurrency=2), "other": fk.Limit(max_concurrency=2)},
        budget=fk.Limit(max_calls=6),
    )
    with pytest.raises(fk.BudgetSpentError, match="budget run: max_calls 6 reached"):
        runner.run(fk.AsyncFlow(start=a), {})
    assert (len(a.started), len(b.started)) == (4, 2)
    assert runner.last_run.budgets["run"].calls == 6  # type: ignore[union-attr]


class Square(fk.BatchNode):
    uses = ("api",)

    def prep(self, shared: dict[str, Any]) -> list[int]:
        return list(range(12))

    def exec(self, item: int) -> tuple[int, int]:
        return item * item, os.getpid()


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_budget_stops_threads_and_worker_processes_too(executor: str) -> None:
    runner = fk.Runner(limits={"api": fk.Limit(max_concurrency=2, max_calls=5)}, process_workers=2)
    with pytest.raises(fk.BudgetSpentError):
        runner.run(Square(executor=executor, chunk_size=1), {})
    info = runner.last_run
    assert info is not None and info.status == "budget"
    assert info.nodes["Square"].items == 5  # five admitted, five finished, no sixth


def test_the_report_shows_spent_against_allowed(tmp_path: Path) -> None:
    with pytest.raises(fk.BudgetSpentError):
        fk.Runner(limits={"api": fk.Limit(max_calls=3)}, report=tmp_path).run(Calls(), {})
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["status"] == "budget" and data["ok"] is False
    [budget] = data["budgets"]
    assert (budget["name"], budget["calls"], budget["max_calls"]) == ("api", 3, 3)
    page = (tmp_path / "report.html").read_text()
    assert "Budgets" in page and "3 of 3 (100 %)" in page and "budget spent" in page


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fk.Limit(max_cost=0), "Limit.max_cost must be a positive number"),
        (lambda: fk.Limit(max_calls=1.5), "Limit.max_calls must be a positive integer"),
        (lambda: fk.Runner(budget=fk.Limit(max_concurrency=2)), "max_calls, max_tokens"),
        (lambda: fk.Runner(budget=fk.Limit(rpm=60, max_calls=3)), "max_cost only"),
    ],
)
def test_bad_budgets_are_refused(make: Any, match: str) -> None:
    with pytest.raises(fk.ConfigError, match=match):
        make()
