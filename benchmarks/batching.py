"""Micro-batching benchmarks: true batches vs per-item calls, the batcher's cost, generation.

Run by hand (needs ``pip install 'flowkit[ml]'``)::

    python benchmarks/batching.py [--sentences 2000] [--batch 64] [--threads N]
                                  [--device cpu] [--rounds 2] [--json PATH]

Prints one table per part and writes every figure to JSON (default
benchmarks/results/batching.json), with the machine, torch threads and load average.

(a) Embedding N sentences with all-MiniLM-L6-v2: one model call per sentence (timed on a
    sample, in a loop and as a per-item ``BatchNode``), ``EmbedNode`` through the runner's
    micro-batcher (calls of 4B texts, forward passes of B), and ``model.encode(all,
    batch_size=B)`` called directly. Targets: flowkit >= 5x per-item calls, and within 10 %
    of the direct call.
(b) The batcher's own cost: 20 000 items through a no-op ``exec_batch``, through the runner
    vs the same batches called in a loop. Target: <= 20 us per item.
(c) Generation with a tiny random GPT-2 (built on the fly): prompts per second at batch 1
    vs 32 through ``GenerateNode``.

``--device cuda:0`` runs (a) and (c) on a GPU; the JSON records the device, so a GPU
machine's run sits beside the CPU one.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _results import write_results

import flowkit as fk
from flowkit.executors import cpu_count
from nodes.models import (
    EmbedNode,
    GenerateNode,
    ModelNode,
    SentenceEncoder,
    TextGenerator,
    build_tiny_causal_lm,
)

VOCABULARY = """the a small old new red quiet busy river city train robot student teacher garden
window morning evening light storm market song letter bridge mountain kitchen watches repairs
paints follows remembers opens crosses finds carries hears near under over behind beside after
before during with without slowly again today"""
WORDS = VOCABULARY.split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of 6 to 18 words."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + f" ({i})."
        for i in range(n)
    ]


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class OnePerCall(fk.BatchNode):
    """The sequential pipeline: one model call per item, on a worker thread."""

    executor = "thread"
    max_concurrency = 1

    def __init__(self, encoder: SentenceEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def prep(self, shared: Any) -> Any:
        return shared["texts"]

    def exec(self, text: str) -> list[float]:
        return self.encoder([text])[0]


def part_a(n: int, batch: int, device: str, rounds: int, sample: int) -> dict[str, Any]:
    texts = sentences(n)
    encoder = SentenceEncoder(device=device, batch_size=batch)
    model = encoder.load()
    encoder(texts[:batch])  # warm up: the kernels of batched and single-item shapes
    for text in texts[:sample]:
        encoder([text])
    per_item = timed(lambda: [encoder([text]) for text in texts[:sample]]) / sample
    each = OnePerCall(encoder)
    per_item_node = timed(lambda: fk.Runner(progress=False).run(each, {"texts": texts[:sample]}))
    runner = fk.Runner(progress=False)
    shared: dict[str, Any] = {"texts": texts}

    def through_flowkit() -> None:
        runner.run(EmbedNode(encoder, batch_size=4 * batch), shared)

    def direct() -> None:
        model.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)

    flowkit_s = direct_s = float("inf")
    for _ in range(rounds):  # alternate, keep the best: the machine's load drifts
        flowkit_s = min(flowkit_s, timed(through_flowkit))
        direct_s = min(direct_s, timed(direct))
    assert len(shared["embeddings"]) == n
    return {
        "sentences": n,
        "batch_size": batch,
        "per_item_sample": sample,
        "node_batch_size": 4 * batch,
        "ms_per_item": {
            "per-item calls": per_item * 1000,
            "per-item BatchNode": per_item_node / sample * 1000,
            "flowkit EmbedNode": flowkit_s / n * 1000,
            "model.encode(all)": direct_s / n * 1000,
        },
        "speedup_vs_per_item": per_item * n / flowkit_s,
        "speedup_vs_per_item_node": per_item_node / sample * n / flowkit_s,
        "flowkit_vs_direct": flowkit_s / direct_s,
    }


def noop(items: list[Any]) -> list[Any]:
    return items


def part_b(n: int, batch: int, repeats: int = 3) -> dict[str, Any]:
    items = list(range(n))
    chunks = [items[i : i + batch] for i in range(0, n, batch)]
    direct = min(timed(lambda: [noop(c) for c in chunks]) for _ in range(repeats))
    runner = fk.Runner(progress=False)
    out: dict[str, Any] = {"items": n, "batch_size": batch, "us_per_item": {}}
    for executor in ("thread", "async"):

        def run(executor: str = executor) -> None:
            node = ModelNode(noop, batch_size=batch, executor=executor)
            runner.run(node, {"items": items})

        best = min(timed(run) for _ in range(repeats))
        out["us_per_item"][f"executor={executor}"] = (best - direct) / n * 1e6
    return out


def part_c(device: str, prompts: int, new_tokens: int) -> dict[str, Any]:
    texts = [s[:40] for s in sentences(prompts, seed=1)]
    with tempfile.TemporaryDirectory() as tmp:
        generator = TextGenerator(
            str(build_tiny_causal_lm(tmp)), device=device, max_new_tokens=new_tokens
        )
        generator(texts[:2])  # load and warm up
        runner = fk.Runner(progress=False)
        per_s = {}
        for size in (1, 32):
            node = GenerateNode(generator, batch_size=size)
            per_s[size] = prompts / timed(lambda node=node: runner.run(node, {"prompts": texts}))
    return {
        "prompts": prompts,
        "max_new_tokens": new_tokens,
        "prompts_per_s": {f"batch {k}": v for k, v in per_s.items()},
        "speedup_32_vs_1": per_s[32] / per_s[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-item-sample", type=int, default=200)
    parser.add_argument("--json", default="benchmarks/results/batching.json")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "cores": cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    print(
        f"{results['cores']} cores, torch {results['torch']} with {results['torch_threads']} "
        f"threads on {args.device}, load average {results['load_average'][0]:.1f}"
    )

    a = results["a_embeddings"] = part_a(
        args.sentences, args.batch, args.device, args.rounds, args.per_item_sample
    )
    print(f"(a) {a['sentences']} sentences, all-MiniLM-L6-v2, batches of {a['batch_size']}")
    for k, v in a["ms_per_item"].items():
        print(f"    {k:<20} {v:8.2f} ms/item")
    print(
        f"    flowkit vs per-item calls: {a['speedup_vs_per_item']:.1f}x faster (loop), "
        f"{a['speedup_vs_per_item_node']:.1f}x (BatchNode)  (target >= 5x)\n"
        f"    flowkit vs model.encode(all): {a['flowkit_vs_direct']:.2f}x the time "
        "(target <= 1.10)"
    )

    b = results["b_batcher_overhead"] = part_b(20_000, args.batch)
    print(f"(b) batcher overhead, {b['items']} no-op items in batches of {b['batch_size']}")
    for k, v in b["us_per_item"].items():
        print(f"    {k:<20} {v:8.2f} us/item  (target <= 20)")

    c = results["c_generation"] = part_c(args.device, 64, 16)
    print(f"(c) tiny GPT-2, {c['prompts']} prompts x {c['max_new_tokens']} new tokens")
    for k, v in c["prompts_per_s"].items():
        print(f"    {k:<20} {v:8.1f} prompts/s")
    print(f"    batch 32 vs 1: {c['speedup_32_vs_1']:.1f}x")

    write_results(args.json, results)


if __name__ == "__main__":
    main()
