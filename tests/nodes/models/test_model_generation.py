"""Batched generation with a tiny random GPT-2 built in the test: no download, no GPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.errors import ConfigError
from nodes.models import GenerateNode, TextGenerator, build_tiny_causal_lm

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

PROMPTS = ["a", "hello there", "The quick brown fox jumps over", "42", "lorem ipsum dolor"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model's ops take microseconds: on shared cores, handing each one to a second
    thread costs far more than the work itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2")))


@pytest.fixture(scope="module")
def generator(model_dir: str) -> TextGenerator:
    return TextGenerator(model_dir, max_new_tokens=12)


def test_a_batch_pads_on_the_left_so_every_prompt_ends_where_generation_starts(
    generator: TextGenerator,
) -> None:
    tokenizer, _ = generator.load()
    batch = tokenizer(["a", "hello there"], padding=True)
    assert tokenizer.padding_side == "left"
    assert batch["attention_mask"][0][0] == 0 and batch["attention_mask"][0][-1] == 1


def test_batched_greedy_generation_equals_one_prompt_at_a_time(
    generator: TextGenerator,
) -> None:
    batched = generator(PROMPTS)
    alone = [generator([p])[0] for p in PROMPTS]
    assert batched == alone
    assert len(set(batched)) == len(PROMPTS)  # distinct prompts, distinct continuations
    assert generator(PROMPTS) == batched


def test_sampling_gives_one_completion_per_prompt(model_dir: str) -> None:
    sampled = TextGenerator(model_dir, max_new_tokens=4, temperature=1.0)(PROMPTS)
    assert len(sampled) == len(PROMPTS) and all(isinstance(c, str) for c in sampled)


def test_device_and_dtype_settings_reach_the_model(model_dir: str) -> None:
    _, model = TextGenerator(model_dir, dtype="bfloat16").load()
    assert (str(model.device), str(model.dtype)) == ("cpu", "torch.bfloat16")
    _, model = TextGenerator(model_dir).load()
    assert str(model.dtype) == "torch.float32"  # "auto" on the CPU
    with pytest.raises(ConfigError, match="dtype must be one of"):
        TextGenerator(model_dir, dtype="float8")
    with pytest.raises(ConfigError, match="temperature must be a number >= 0"):
        TextGenerator(model_dir, temperature=-1)


class CountingGenerate(GenerateNode):
    batch_size = 2

    def __init__(self, generator: TextGenerator) -> None:
        super().__init__(generator)
        self.calls: list[int] = []

    def exec_batch(self, items: list[Any]) -> list[Any]:
        self.calls.append(len(items))
        return super().exec_batch(items)


def test_the_node_generates_through_the_runner_in_batches(generator: TextGenerator) -> None:
    node = CountingGenerate(generator)
    shared: dict[str, Any] = {"prompts": PROMPTS}
    fk.Runner().run(node, shared)
    assert shared["completions"] == [generator([p])[0] for p in PROMPTS]
    assert node.calls == [2, 2, 1]


def test_the_tiny_model_is_saved_as_a_loadable_directory(model_dir: str) -> None:
    names = {p.name for p in Path(model_dir).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
