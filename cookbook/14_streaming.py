"""Chapter 14: results as they land.

A 33-hour experiment that writes nothing until the end loses everything to one crash, and
shows nothing until then. Two ways to see results as each item finishes, while the run goes
on (``post`` still gets the whole batch, in input order, as in PocketFlow):

- ``post_item_async(shared, item, result)`` (or a sync ``post_item``) on a batch node is
  called as each item lands, in the order they finish: here it appends a line to a file;
- ``async for result in runner.stream(flow, shared)`` yields each item's ``ItemResult``
  (node path, item index, value or error record) as it lands; the stream owns the run, so
  leaving the loop early cancels the run cleanly.

The run report marks when each line was written: ticks above the timeline's lanes
(``report.json``'s ``marks``), read back below.

Run: python cookbook/14_streaming.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode, Simulation

SETTINGS = LLMSettings(
    provider="simulated", simulation=Simulation(latency_s=0.05, latency_max_s=0.6, seed=3)
)


class Translate(ParallelLLMNode):
    """Translates sentences; each translation is written to the file as it lands."""

    async def prep_async(self, shared):
        return shared["sentences"]

    async def exec_async(self, sentence):
        return await self.llm.chat(f"Translate to French: {sentence}", max_tokens=60)

    async def post_item_async(self, shared, sentence, translation):
        with open(shared["output"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"sentence": sentence, "translation": translation}) + "\n")

    async def post_async(self, shared, sentences, translations):
        shared["translations"] = translations  # the whole batch, in input order


async def main() -> None:
    folder = Path(tempfile.mkdtemp())
    shared = {
        "sentences": [f"sentence number {n} of the annual report" for n in range(8)],
        "output": folder / "translations.jsonl",
    }
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=8)}, report=folder / "report")
    stream = runner.stream(fk.AsyncFlow(start=Translate(settings=SETTINGS)), shared)
    async for result in stream:
        written = len(shared["output"].read_text().splitlines())
        print(f"item {result.index} landed; {written} line(s) in the file so far")
    assert len(shared["translations"]) == 8 and stream.info.status == "done"
    marks = json.loads((folder / "report" / "report.json").read_text())["marks"]
    marks.sort(key=lambda mark: mark["at"])
    when = ", ".join(f"{mark['index']} at {mark['at']:.2f} s" for mark in marks)
    print(f"the report's marks, when each line was written: {when}")
    print(f"post got all 8 in input order; the file has them as they landed: {shared['output']}")


if __name__ == "__main__":
    asyncio.run(main())
