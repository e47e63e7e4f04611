"""Chapter 8: a privacy experiment, from a loop over questions to a four-level graph.

A medical QA experiment asks, per multiple-choice question: how well does a small local
model do alone (scenario 1), with a chain of thought from a big remote model (2), the
remote model alone (4), and with a CoT the remote model wrote for a *sanitised* question
(3.x: a text-DP mechanism at budget ε)? Written by hand it is a loop: one question, one
scenario, one ε, one call at a time. A real run of it took 33 hours.

Here the same work runs twice with the simulated provider (local 50 ms, remote 100 ms a
call): first as that loop, then as the bundled ``medmcqa`` graph, where questions,
scenarios, mechanisms and ε values all run at once and only the two providers' limits
(4 local and 8 remote calls in flight) bound them. Then the run's numbers show where the
time went: calls in flight per provider, and how long calls waited for a slot.

The sanitisers run as their authors' code does (``variant="reference"``); pass
``variant="strict"`` to ``run_experiment`` (or ``--dp-variant strict`` to ``flowkit run
medmcqa``) for the forms that spend exactly ε. The table ends with what each one spends and
how many of the question's words it left unchanged.

Run: python cookbook/08_medmcqa_privacy_experiment.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import flowkit as fk
from flows.medmcqa import (
    QuestionFile,
    SimulatedModels,
    hashed_embedder,
    run_experiment,
    sample_path,
)
from flows.medmcqa.data import Question
from flows.medmcqa.privacy import InferDPT, SanTextPlus, word_counts
from flows.medmcqa.prompts import ANSWER_SYSTEM, COT_SYSTEM, answer_prompt, cot_prompt
from nodes.llm import LLMClient, LLMSettings, Simulation

EPSILONS = (1.0, 2.0, 3.0)
SCENARIOS = ("1", "2", "4", "3.2", "3.3")  # PhraseDP (3.0) left out to keep the loop short
LOCAL = LLMSettings(
    provider="simulated", model="local", limiter="local", simulation=Simulation(latency_s=0.05)
)
REMOTE = LLMSettings(
    provider="simulated", model="remote", limiter="remote", simulation=Simulation(latency_s=0.1)
)
SIM = SimulatedModels()


async def the_loop(questions: list[Question]) -> int:
    """The experiment as it is usually first written: every call waits for the last one."""
    local, remote = LLMClient(LOCAL), LLMClient(REMOTE)
    embedder = hashed_embedder(questions)
    corpus = word_counts(q.question for q in questions)  # SANTEXT+ ranks words by it
    space = embedder.token_space()
    correct = 0

    async def answer(client: LLMClient, role: str, q: Question, cot: str | None = None) -> bool:
        reply = await client.chat(
            answer_prompt(q, cot),
            system=ANSWER_SYSTEM,
            simulate=lambda: SIM.answer("local" if role == "local" else "remote", q, cot),
        )
        return reply.endswith(f"Answer: {q.letter}")

    async def cot_for(q: Question, text: str) -> str:
        return await remote.chat(
            cot_prompt(text), system=COT_SYSTEM, simulate=lambda: SIM.cot(q, text)
        )

    for q in questions:
        correct += await answer(local, "local", q)  # scenario 1
        correct += await answer(local, "local", q, await cot_for(q, q.question))  # 2
        correct += await answer(remote, "remote", q)  # 4
        for eps in EPSILONS:  # 3.2 and 3.3
            for mechanism in (InferDPT(space, eps), SanTextPlus(space, eps, frequencies=corpus)):
                private = mechanism.sanitise(q.question, np.random.default_rng(0))
                correct += await answer(local, "local", q, await cot_for(q, private))
    return correct


def main() -> None:
    import asyncio

    questions = list(QuestionFile(sample_path(), limit=6))
    started = time.perf_counter()
    asyncio.run(the_loop(questions))
    loop_s = time.perf_counter() - started

    runner = fk.Runner(
        limits={"local": fk.Limit(max_concurrency=4), "remote": fk.Limit(max_concurrency=8)}
    )
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        table = run_experiment(
            questions,
            out,
            local=LOCAL,
            remote=REMOTE,
            scenarios=SCENARIOS,
            epsilons=EPSILONS,
            runner=runner,
            plot=False,
        )
        graph_s = time.perf_counter() - started
        cells = len((Path(out) / "results.jsonl").read_text().splitlines())

    print(f"{len(questions)} questions, {cells} cells each way")
    print(f"the loop: {loop_s:.2f} s; the graph: {graph_s:.2f} s ({loop_s / graph_s:.1f}x)")
    print(table.to_markdown(), end="")
    info = runner.last_run
    assert info is not None
    print("where the time went, per provider:")
    for name, lim in info.limiters.items():
        print(
            f"  {name:<6} {lim.calls} calls, peak {lim.peak_in_flight}/{lim.max_concurrency} in "
            f"flight, mean {lim.mean_in_flight:.1f}, every slot busy {lim.full_share:.0%} of "
            f"the time, {lim.waits} waits for a slot"
        )
    print("per node (cells, seconds in calls, seconds waiting for a provider's slot):")
    for name in ("local_answer", "remote_cot", "remote_answer", "inferdpt", "santext+"):
        stats = info.nodes[name]
        print(
            f"  {name:<14} {stats.items:3d} cells, {stats.usage.get('latency_s', 0):5.2f} s "
            f"calling, {stats.usage.get('limiter_wait_s', 0):5.2f} s waiting"
        )
    print("Runner(report='DIR') draws the same as a timeline: every cell, every wait.")


if __name__ == "__main__":
    main()
