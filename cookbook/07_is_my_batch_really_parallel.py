"""Chapter 7: is my batch really parallel?

The same sentences embedded with all-MiniLM-L6-v2 (bundled with the ``ml`` extra, loaded
offline) by pipelines that all call themselves batch pipelines:

- sequential: a ``BatchNode`` whose ``exec`` encodes one sentence per model call;
- fake batch: an ``exec_batch`` that loops over its sentences, one model call each, the
  "batch pipeline that was a for loop" of the GPU post-mortem;
- true batch: ``EmbedNode``, whose ``exec_batch`` sends a whole batch through the model in
  one forward pass; and the same node in one sub-flow per sentence, where the runner's
  micro-batcher merges the single sentences of parallel branches into batches.

For each: wall time, speedup over sequential, model calls, and what the run report shows.
The fake batch looks batched in the report (many items in flight at once) yet makes as many
model calls as the sequential loop: count forward passes, not batches.

Run: python cookbook/07_is_my_batch_really_parallel.py   (needs pip install 'flowkit[ml]')
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import flowkit as fk
from flowkit.errors import MissingExtraError
from flowkit.report import load_report

SUBJECTS = ["The cat", "A small robot", "My neighbour", "The old train", "Every student"]
VERBS = ["watches", "repairs", "paints", "follows", "remembers"]
OBJECTS = ["the river", "a red kite", "the city lights", "an empty room", "the morning news"]
N = 32
BATCH = 16


class CountingModel:
    """Wraps the encoder to count model calls (forward passes) and texts."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.calls = 0

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return self.encoder(texts)


class Sequential(fk.BatchNode):
    """One model call per sentence."""

    executor = "thread"
    max_concurrency = 1

    def __init__(self, model: CountingModel) -> None:
        super().__init__()
        self.model = model

    def prep(self, shared):
        return shared["texts"]

    def exec(self, text):
        return self.model([text])[0]

    def post(self, shared, prep_res, exec_res):
        shared["embeddings"] = exec_res


class FakeBatch(Sequential):
    """Batches of 16 arrive, and are looped over: still one model call per sentence."""

    batch_size = BATCH

    def exec_batch(self, texts):
        return [self.model([text])[0] for text in texts]


class OneSentence(fk.AsyncParallelBatchFlow):
    """One sub-flow per sentence, all running at once."""

    async def prep_async(self, shared):
        return [{"i": i} for i in range(len(shared["texts"]))]

    async def post_async(self, shared, prep_res, exec_res):
        shared["embeddings"] = [shared.pop(f"embedding {i}") for i in range(len(prep_res))]


def pipelines(encoder: Any) -> list[tuple[str, fk.BaseNode, CountingModel]]:
    from nodes.models import EmbedNode

    class EmbedOne(EmbedNode):
        """EmbedNode for the sentence this sub-flow was given."""

        def prep(self, shared):
            return [shared["texts"][self.params["i"]]]

        def post(self, shared, prep_res, exec_res):
            shared[f"embedding {self.params['i']}"] = exec_res[0]

    models = [CountingModel(encoder) for _ in range(4)]
    return [
        ("sequential", Sequential(models[0]), models[0]),
        ("fake batch", FakeBatch(models[1]), models[1]),
        ("true batch", EmbedNode(models[2], batch_size=BATCH), models[2]),
        (
            "true batch, sub-flow per text",
            OneSentence(start=EmbedOne(models[3], batch_size=BATCH)),
            models[3],
        ),
    ]


def main() -> None:
    try:
        from nodes.models import SentenceEncoder

        encoder = SentenceEncoder()
    except MissingExtraError as exc:
        print(f"skipped: {exc}")
        return
    import torch

    # One thread: on shared cores, torch's second thread waits for a time slice at every
    # operation, which would swamp the per-call cost this chapter compares.
    torch.set_num_threads(1)
    texts = [f"{SUBJECTS[i % 5]} {VERBS[i // 5 % 5]} {OBJECTS[i // 25 % 5]}." for i in range(N)]
    reference = encoder(texts)  # loads the model once, before any timing
    for start in range(0, N, BATCH):  # and prepares the kernels of every shape used below
        encoder(texts[start : start + BATCH])
    for text in texts:
        encoder([text])
    print(f"{N} sentences, all-MiniLM-L6-v2 on one CPU thread, batches of {BATCH}\n")
    header = (
        f"{'pipeline':<30} {'time':>6} {'speedup':>8} {'model calls':>12} {'items':>6} "
        f"{'in flight':>10} {'calls in flight':>16}"
    )
    print(header)
    print("-" * len(header))
    sequential = 0.0
    for label, flow, model in pipelines(encoder):
        shared: dict[str, Any] = {"texts": texts}
        with tempfile.TemporaryDirectory() as report_dir:
            runner = fk.Runner(report=report_dir, progress=False)
            runner.run(flow, shared)
            [node] = [n for n in load_report(report_dir).nodes if n.items]
        assert runner.last_run is not None
        took = runner.last_run.wall_time  # the run itself, not writing its report
        stats = runner.last_run.nodes[node.name]
        same = all(
            abs(x - y) < 1e-4
            for a, b in zip(shared["embeddings"], reference, strict=True)
            for x, y in zip(a, b, strict=True)
        )
        assert same, f"{label}: embeddings differ from a direct call"
        sequential = sequential or took
        print(
            f"{label:<30} {took:5.2f}s {sequential / took:7.1f}x {model.calls:>12} "
            f"{node.items:>6} {f'{node.peak_in_flight} / {node.mean_in_flight:.1f}':>10} "
            f"{stats.peak_in_flight:>16}"
        )
    print(
        "\nin flight: items in an exec call at once, peak / mean (the run report); calls in "
        "flight:\nexec or exec_batch calls at once (runner.last_run.nodes)."
    )
    print(
        "\nThe fake batch shows 16 items in flight like the true batch, yet makes one model "
        "call per\nsentence like the sequential loop, and takes the sequential loop's time. The "
        "true batch\nmakes one call per 16 sentences. Read the model calls and the time, not "
        "the word 'batch'."
    )


if __name__ == "__main__":
    sys.exit(main())
