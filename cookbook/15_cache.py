"""Chapter 15: a cache across runs.

Resume finishes one run. A cache serves every later run: change one setting of an
experiment, add one more case, and only what changed is computed again, even under a new
run id. A node opts in with ``cache = True`` (or ``CachePolicy(ttl=..., key=...)``) and the
runner names the file:

    Runner(cache="cache.db")          # flowkit run ... --cache [PATH]

A result is reused when the node's code (the same fingerprint a resume checks), its params
and the item are the same; an LLM node also keys on its model and request settings, so
another model or temperature asks again. Failures are never cached. Hits show in the run's
counts, its progress line and its report; ``flowkit cache ls`` and ``flowkit cache clear``
look after the file. The bundled MedMCQA experiment caches its cells: rerun it with one more
ε and only the new cells are computed (``flowkit run medmcqa --epsilons 1,2,3 --cache``).

Run: python cookbook/15_cache.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import flowkit as fk
from flowkit.store.cache import ResultCache
from nodes.llm import LLMSettings, ParallelLLMNode, Simulation


class Classify(ParallelLLMNode):
    cache = True

    async def prep_async(self, shared):
        return shared["tickets"]

    async def exec_async(self, ticket):
        return await self.llm.chat(f"Label this ticket (bug/billing/other): {ticket}", max_tokens=5)

    async def post_async(self, shared, prep_res, labels):
        shared["labels"] = labels


def run(cache: Path, tickets: list[str], model: str = "gpt-4o-mini") -> fk.RunInfo:
    settings = LLMSettings(provider="simulated", model=model, simulation=Simulation(latency_s=0.2))
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=10)}, cache=cache, progress=False)
    started = time.perf_counter()
    runner.run(Classify(settings=settings), {"tickets": tickets})
    info = runner.last_run
    assert info is not None
    calls = info.limiters["llm"].calls if "llm" in info.limiters else 0
    print(
        f"{len(tickets)} tickets with {model}: {info.cached} from the cache, {calls} LLM calls, "
        f"{time.perf_counter() - started:.2f} s (run {info.run_id})"
    )
    return info


def main() -> None:
    cache = Path(tempfile.mkdtemp()) / "cache.db"
    tickets = [f"ticket {n}: the invoice total is wrong" for n in range(30)]
    first = run(cache, tickets)
    again = run(cache, [*tickets, "ticket 30: app crashes on start"])  # one more ticket
    other = run(cache, tickets[:5], model="gpt-4o")  # another model: asked again
    assert (first.cached, again.cached, other.cached) == (0, 30, 0)
    stored = ResultCache(cache, readonly=True)
    entries = stored.summary()
    stored.close()
    print(f"the cache holds {sum(e.entries for e in entries)} results ({cache})")


if __name__ == "__main__":
    main()
