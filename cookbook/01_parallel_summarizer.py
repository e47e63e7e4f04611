"""Chapter 1: the parallel summarizer.

An ``AsyncParallelBatchNode`` calls ``exec_async`` once per item that ``prep_async``
returns, and runs those calls at the same time. ``ParallelLLMNode`` is that node plus
``self.llm``, an LLM client: every call it makes takes a slot of the runner's "llm" limit
(here at most 4 calls in flight), is retried on rate limits and server errors, and adds
its tokens and latency to the node's stats.

With no OPENAI_API_KEY set, calls go to the offline simulated provider, which answers
deterministically after about 50 ms (a notice on stderr says so).

Run: python cookbook/01_parallel_summarizer.py
"""

from __future__ import annotations

import flowkit as fk
from nodes.llm import ParallelLLMNode


class ParallelSummarizer(ParallelLLMNode):
    async def prep_async(self, shared):
        return shared["texts"]  # one exec_async call per text

    async def exec_async(self, text):
        return await self.llm.chat(f"Summarize in one sentence: {text}", max_tokens=60)

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["summaries"] = exec_res_list  # in the order of the texts
        return "default"


def main() -> None:
    shared = {
        "texts": [
            "Text about history: the printing press spread books across Europe.",
            "Text about science: enzymes speed up reactions without being used up.",
            "Text about art: impressionists painted light as they saw it.",
            "Text about music: the fugue weaves one theme through many voices.",
            "Text about cooking: bread rises because yeast makes carbon dioxide.",
            "Text about space: a day on Venus is longer than its year.",
        ]
    }
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=4)})
    runner.run(fk.AsyncFlow(start=ParallelSummarizer()), shared)

    for summary in shared["summaries"]:
        print("-", summary)
    assert runner.last_run is not None
    usage = runner.last_run.nodes["ParallelSummarizer"].usage
    print(
        f"{usage['calls']:.0f} LLM calls in {runner.last_run.wall_time:.2f} s "
        f"(mean latency {usage['latency_s'] / usage['calls']:.2f} s, "
        f"{usage['prompt_tokens'] + usage['completion_tokens']:.0f} tokens)"
    )


if __name__ == "__main__":
    main()
