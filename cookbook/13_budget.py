"""Chapter 13: a budget with a hard stop.

A run that may cost money should be able to say "no more than this". A named limiter takes
a budget besides its limits, in calls, tokens or dollars:

    Runner(limits={"llm": Limit(max_concurrency=8, max_cost=0.05)})

Every LLM call prices its tokens from the settings' price table (``LLMSettings(prices=
{"gpt-4o-mini": (0.15, 0.60)})``, dollars per million prompt and completion tokens, or
``FLOWKIT_LLM_PRICES``) and charges the limiter. Once the budget is spent no new call
starts; the calls in flight finish and are stored; the run ends with the status "budget"
(``BudgetSpentError``; ``flowkit run ... --max-cost USD`` exits with status 3). What was
spent is stored with the run, so a resume with a larger budget continues from there and
counts what the first part spent.

The prices below are made up for the simulated provider, which answers offline.

Run: python cookbook/13_budget.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode, Simulation

SETTINGS = LLMSettings(
    provider="simulated",
    model="gpt-4o-mini",
    prices={"gpt-4o-mini": (150.0, 600.0)},  # dollars per million tokens: dear, to show it
    simulation=Simulation(latency_s=0.05),
)


class Summarize(ParallelLLMNode):
    async def prep_async(self, shared):
        return shared["documents"]

    async def exec_async(self, document):
        return await self.llm.chat(f"Summarize in one line: {document}", max_tokens=40)

    async def post_async(self, shared, prep_res, summaries):
        shared["summaries"] = summaries


def runner(store: Path, max_cost: float, **run: str) -> fk.Runner:
    limit = fk.Limit(max_concurrency=4, max_cost=max_cost)
    return fk.Runner(limits={"llm": limit}, store=store, progress=False, **run)


def main() -> None:
    store = Path(tempfile.mkdtemp()) / "runs.db"
    shared = {"documents": [f"quarterly report {n}: revenue, costs, outlook" for n in range(40)]}
    first = runner(store, 0.10, run_id="reports")
    try:
        first.run(Summarize(settings=SETTINGS), shared)
    except fk.BudgetSpentError as stop:
        print(f"stopped: {stop}")
    info = first.last_run
    assert info is not None and info.status == "budget"
    done = info.nodes["Summarize"].items
    print(f"  {done} of 40 documents done and stored, status {info.status}")
    print(f"  {info.budgets['llm'].line()} (past the cap by what the calls in flight used)")

    again = runner(store, 1.00, resume="reports")
    again.run(Summarize(settings=SETTINGS), shared)
    info = again.last_run
    assert info is not None and len(shared["summaries"]) == 40
    print(f"resumed with $1.00: {info.resumed} reused, the rest summarised; status {info.status}")
    print(f"  {info.budgets['llm'].line()}")
    print(f"  this part cost ${info.nodes['Summarize'].usage['cost']:.4f}")


if __name__ == "__main__":
    main()
