"""Chapter 3: processing many documents with AsyncParallelBatchFlow.

A parallel batch flow runs a whole sub-flow once per params dict that its ``prep_async``
returns, several at once. Here each run loads one file and summarises it; the batch flow
keeps at most 3 documents in flight, and the "llm" limit, shared by every copy of the
summariser, keeps at most 2 LLM calls in flight across all of them.

Run: python cookbook/03_many_documents.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiofiles

import flowkit as fk
from nodes.llm import LLMNode


class LoadDocument(fk.AsyncNode):
    async def prep_async(self, shared):
        return Path(shared["folder"]) / self.params["filename"]

    async def exec_async(self, path):
        async with aiofiles.open(path, encoding="utf-8") as handle:
            return (await handle.read()).strip()

    async def post_async(self, shared, prep_res, text):
        shared["texts"][self.params["filename"]] = text  # each run writes its own key


class SummarizeDocument(LLMNode):
    async def prep_async(self, shared):
        return shared["texts"][self.params["filename"]]

    async def exec_async(self, text):
        return await self.llm.chat(f"Summarize in one line: {text}", max_tokens=40)

    async def post_async(self, shared, prep_res, summary):
        shared["summaries"][self.params["filename"]] = summary


class ProcessMultipleDocuments(fk.AsyncParallelBatchFlow):
    max_concurrency = 3  # documents in flight

    async def prep_async(self, shared):
        return [{"filename": name} for name in shared["files"]]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for n in range(8):
            name = f"report_{n}.txt"
            Path(folder, name).write_text(f"Quarterly report {n}: sales rose {n + 2}%.\n")
            files.append(name)

        load = LoadDocument()
        load >> SummarizeDocument()
        flow = ProcessMultipleDocuments(start=fk.AsyncFlow(start=load))
        shared = {"folder": folder, "files": files, "texts": {}, "summaries": {}}
        runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)})
        runner.run(flow, shared)

    for name in files:
        print(f"{name}: {shared['summaries'][name]}")
    assert runner.last_run is not None
    documents = runner.last_run.nodes["SummarizeDocument"]
    print(
        f"{documents.items} documents in {runner.last_run.wall_time:.2f} s, at most "
        f"{documents.peak_in_flight} summarising at once"
    )


if __name__ == "__main__":
    main()
