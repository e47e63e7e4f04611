from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from flows.prompt_opt import Judge, RoleSettings, role_settings
from flows.prompt_opt.conversation import Judged, Turn
from flows.prompt_opt.prompts import Verdict
from nodes.llm import Bill, LLMSettings, Simulation


@pytest.fixture
def offline() -> RoleSettings:
    """Every role on the simulated provider, with no latency."""
    return role_settings(LLMSettings(provider="simulated", simulation=Simulation(latency_s=0)))


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class CoinJudge(Judge):
    """A judge whose score is a fresh coin toss per conversation (its key seeds it): two
    runs of one prompt on one dummy disagree, as with a noisy real judge."""

    async def exec_async(self, item: Turn) -> Judged:
        score = random.Random(item.key).choice([0.0, 0.5, 1.0])
        return Judged(
            verdict=Verdict(score=score, feedback="The assistant should ask about allergies."),
            bill=Bill(attempts=1, answered=1),
        )


class FailingJudge(Judge):
    """The judge's call fails for good on the dummies in ``failing``."""

    failing: Sequence[str] = ("chest-pain",)

    async def exec_async(self, item: Turn) -> Judged:
        if item.dummy.id in self.failing:
            return Judged(error="LLMServerError: HTTP 500", bill=Bill(attempts=2, failed=1))
        return await super().exec_async(item)


@pytest.fixture
def read_jsonl() -> Callable[[Path], list[dict[str, Any]]]:
    return jsonl


@pytest.fixture
def coin_judge() -> type[Judge]:
    return CoinJudge


@pytest.fixture
def failing_judge() -> Callable[[Sequence[str]], type[Judge]]:
    def make(ids: Sequence[str]) -> type[Judge]:
        return type("Failing", (FailingJudge,), {"failing": tuple(ids)})

    return make
