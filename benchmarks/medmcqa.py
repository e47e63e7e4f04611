"""MedMCQA experiment benchmark: the seed's sequential loop vs flowkit's four-level graph.

Run by hand: ``python benchmarks/medmcqa.py [--questions 100] [--sample 3] [--json PATH]``.
Prints a table and writes every figure to JSON (default benchmarks/results/medmcqa.json).

Each question has 12 cells (scenarios 1, 2, 4 and 3 mechanisms x 3 ε) plus PhraseDP's 3
paraphrase calls: 14 local and 11 remote calls. The simulated provider answers after 0.2 s
(local) and 0.5 s (remote), so one question takes 8.3 s of calls in a row.

(a) sequential: the seed's loop, every call one after another;
(b) the seed's phase-1 plan: scenarios 1, 2 and 4 at once, the private cells in turn;
(c) flowkit's graph under limits (local L, remote R in flight). The bound the limits impose
    is calls x latency / limit for the busier provider; (c) is reported as that bound over
    its wall time (target >= 85 %) and as a speedup over (a) (target >= 30x).

(a) and (b) are measured on ``--sample`` questions and extrapolated per question to
``--questions``: the table says so. Peak RSS is measured in fresh processes running (c) on
100 and 1 000 questions with latencies scaled down 10x (it should stay flat).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _results import write_results

import flowkit as fk
from flows.medmcqa import (
    CoTAnswer,
    Experiment,
    LocalAnswer,
    Paraphrase,
    PhraseDPCells,
    PrivateCells,
    Question,
    QuestionFile,
    RemoteAnswer,
    build_flow,
    hashed_embedder,
    sample_path,
)
from flows.medmcqa.flow import Job, Tally
from flows.medmcqa.privacy import BANDS, clean_candidates
from flows.medmcqa.run import corpus_counts
from nodes.llm import LLMSettings, Simulation

LOCAL_S, REMOTE_S = 0.2, 0.5
LOCAL_CALLS, REMOTE_CALLS = 14, 11


class Questions:
    """``n`` questions: the bundled sample repeated under new ids, generated lazily."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sample = list(QuestionFile(sample_path()))

    def __iter__(self) -> Iterator[Question]:
        for i in range(self.n):
            q = self.sample[i % len(self.sample)]
            yield q.model_copy(update={"id": f"{q.id}-{i}"})


def experiment(scale: float = 1.0) -> Experiment:
    def settings(role: str, latency: float) -> LLMSettings:
        return LLMSettings(
            provider="simulated",
            model=f"{role}-sim",
            limiter=role,
            simulation=Simulation(latency_s=latency * scale),
        )

    return Experiment(
        settings("local", LOCAL_S),
        settings("remote", REMOTE_S),
        hashed_embedder(Questions(64)),
        corpus=corpus_counts(Questions(64)),
    )


class Cells:
    """The flow's node classes, called directly: the seed's plain loop over the same work."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.local, self.cot, self.remote = LocalAnswer(exp), CoTAnswer(exp), RemoteAnswer(exp)
        self.paraphrase = Paraphrase(exp)
        self.private = {"3.2": PrivateCells(exp, "3.2"), "3.3": PrivateCells(exp, "3.3")}
        self.phrasedp = PhraseDPCells(exp)

    def bind(self, q: Question) -> None:
        for node in (
            self.local,
            self.cot,
            self.remote,
            self.paraphrase,
            self.phrasedp,
            *self.private.values(),
        ):
            node.set_params({"question": q.model_dump()})

    async def private_cells(self, q: Question) -> None:
        written: list[str] = []
        for band, _ in BANDS:
            written += await self.paraphrase.exec_async(band)
        candidates = tuple(clean_candidates(q.question, written))
        for eps in self.exp.epsilons:
            await self.phrasedp.run_cell(q, Job(q.id, "3.0", eps, candidates), Tally())
            for scenario, node in self.private.items():
                await node.run_cell(q, Job(q.id, scenario, eps), Tally())

    async def sequential(self, q: Question) -> None:
        self.bind(q)
        await self.local.run_cell(q, Job(q.id, "1"), Tally())
        await self.cot.run_cell(q, Job(q.id, "2"), Tally())
        await self.remote.run_cell(q, Job(q.id, "4"), Tally())
        await self.private_cells(q)

    async def phase1(self, q: Question) -> None:
        self.bind(q)
        await asyncio.gather(  # the seed ran these three in threads: the same overlap
            self.local.run_cell(q, Job(q.id, "1"), Tally()),
            self.cot.run_cell(q, Job(q.id, "2"), Tally()),
            self.remote.run_cell(q, Job(q.id, "4"), Tally()),
        )
        await self.private_cells(q)


def loop(kind: str, n: int) -> float:
    cells = Cells(experiment())

    async def main() -> None:
        for q in Questions(n):
            await (cells.sequential(q) if kind == "sequential" else cells.phase1(q))

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started


def graph(n: int, local: int, remote: int, scale: float = 1.0) -> dict[str, Any]:
    exp = experiment(scale)
    runner = fk.Runner(
        limits={
            "local": fk.Limit(max_concurrency=local),
            "remote": fk.Limit(max_concurrency=remote),
        },
        progress=False,
    )
    with tempfile.TemporaryDirectory() as out:
        shared: dict[str, Any] = {"questions": Questions(n), "output": Path(out)}
        started = time.perf_counter()
        runner.run(build_flow(exp), shared)
        wall = time.perf_counter() - started
    bound = max(
        n * LOCAL_CALLS * LOCAL_S * scale / local, n * REMOTE_CALLS * REMOTE_S * scale / remote
    )
    return {
        "questions": n,
        "limits": {"local": local, "remote": remote},
        "wall_s": wall,
        "bound_s": bound,
        "of_bound": bound / wall,
        "cells": shared["sink"].cells,
        "failed": shared["table"].failed,
    }


def peak_rss_mb(n: int) -> float:
    """Peak RSS of a fresh process running (c) on ``n`` questions, latencies / 10."""
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--sample", type=int, default=3, help="questions (a) and (b) run")
    parser.add_argument("--json", default="benchmarks/results/medmcqa.json")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        graph(args.rss_child, 16, 32, scale=0.1)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return

    n = args.questions
    per_seq = loop("sequential", args.sample) / args.sample
    per_phase1 = loop("phase1", args.sample) / args.sample
    seq, phase1 = per_seq * n, per_phase1 * n
    runs = [graph(n, 8, 16), graph(n, 16, 32)]
    rss = {str(q): peak_rss_mb(q) for q in (100, 1000)}

    print(f"MedMCQA, {n} questions x 12 cells; simulated local {LOCAL_S} s, remote {REMOTE_S} s")
    print(f"{'plan':<44} {'wall s':>8} {'speedup':>8} {'of bound':>9}")
    print(
        f"{f'(a) sequential (measured on {args.sample}, x{n / args.sample:.1f})':<44} "
        f"{seq:8.1f} {1:8.1f}x {'':>9}"
    )
    print(
        f"{f'(b) seed phase 1 (measured on {args.sample}, x{n / args.sample:.1f})':<44} "
        f"{phase1:8.1f} {seq / phase1:8.1f}x {'':>9}"
    )
    for run in runs:
        lim = run["limits"]
        label = f"(c) flowkit graph, local {lim['local']} / remote {lim['remote']}"
        print(
            f"{label:<44} {run['wall_s']:8.1f} {seq / run['wall_s']:8.1f}x "
            f"{run['of_bound']:8.0%}  (bound {run['bound_s']:.1f} s)"
        )
    print(
        f"peak RSS of (c), latencies / 10: {rss['100']:.0f} MB at 100 questions, "
        f"{rss['1000']:.0f} MB at 1 000"
    )
    write_results(
        args.json,
        {
            "questions": n,
            "latency_s": {"local": LOCAL_S, "remote": REMOTE_S},
            "calls_per_question": {"local": LOCAL_CALLS, "remote": REMOTE_CALLS},
            "sequential": {"measured_on": args.sample, "per_question_s": per_seq, "wall_s": seq},
            "phase1": {"measured_on": args.sample, "per_question_s": per_phase1, "wall_s": phase1},
            "graph": [{**run, "speedup": seq / run["wall_s"]} for run in runs],
            "peak_rss_mb": rss,
        },
    )


if __name__ == "__main__":
    main()
