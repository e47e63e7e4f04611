"""Training, validation and test rows (given, or one set split with a seed, and said so),
and the minibatches drawn from the training rows.

Training rows drive the minibatch gates and the reflector's evidence; validation rows the
Pareto front and the choice of the best; test rows are scored once, at the end, and
reported apart. One set alone is split (by default half for training, half for validation)
with the run's seed, and the split is printed; validation equal to training is allowed
(it is gepa's default) but warned about: the best is then chosen on the rows it was tuned on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from flows.prompt_opt.scenario import PromptOptInputError

R = TypeVar("R")

DEFAULT_SPLIT = (0.5, 0.5, 0.0)
"""Shares of one set for training, validation and test."""

SAME_AS_TRAIN = (
    "validation equals training: the best is chosen on the rows its candidates were tuned on, "
    "so its score is optimistic; give held-out validation rows (or a test set) to measure it"
)


@dataclass(frozen=True)
class Splits(Generic[R]):
    """The rows of each part and how they were made, in words."""

    train: tuple[R, ...]
    val: tuple[R, ...]
    test: tuple[R, ...]
    how: str
    warnings: tuple[str, ...] = ()


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.5,0.5"`` or ``"0.4,0.3,0.3"`` as shares of train, validation and test."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3) or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise PromptOptInputError(
            f"--split expects TRAIN,VAL[,TEST] shares such as 0.5,0.5 or 0.4,0.3,0.3, got {text!r}"
        )
    total = sum(parts)
    shares = [p / total for p in parts] + [0.0] * (3 - len(parts))
    return shares[0], shares[1], shares[2]


def make_splits(
    rows: Sequence[R] | None = None,
    *,
    train: Sequence[R] | None = None,
    val: Sequence[R] | None = None,
    test: Sequence[R] | None = None,
    split: tuple[float, float, float] | None = DEFAULT_SPLIT,
    seed: int = 0,
    row_id: Callable[[R], str],
    noun: str = "rows",
) -> Splits[R]:
    """The parts: ``train``/``val``/``test`` as given, or ``rows`` split with ``seed`` by the
    ``split`` shares (None: validation is the whole set, as training)."""
    if rows is not None and train is not None:
        raise PromptOptInputError(f"give one set of {noun} or train= (and val=), not both")
    warnings: list[str] = []
    if rows is not None:
        rows = list(rows)
        if not rows:
            raise PromptOptInputError(f"no {noun} given")
        _check_unique(rows, row_id, noun)
        if split is None or len(rows) < 2:
            why = "as asked" if split is None else f"only {len(rows)} {noun}: nothing to hold out"
            parts = Splits(tuple(rows), tuple(rows), tuple(test or ()), "", ())
            how = f"{len(rows)} {noun}, all for training and validation ({why})"
            warnings.append(SAME_AS_TRAIN)
            return _finish(parts, how, warnings, row_id, noun)
        t, v, x = _split(rows, split, seed)
        how = (
            f"{len(rows)} {noun} split with seed {seed}: {len(t)} training, {len(v)} validation"
            + (f", {len(x)} test" if x else "")
        )
        if test:
            x = (*x, *test)
        return _finish(Splits(t, v, x, ""), how, warnings, row_id, noun)
    if not train:
        raise PromptOptInputError(f"no training {noun} given")
    t = tuple(train)
    if val is None:
        v = t
        how = f"{len(t)} training {noun}, also used for validation (no val given)"
    else:
        v = tuple(val)
        if not v:
            raise PromptOptInputError(f"the validation set holds no {noun}")
        how = f"as given: {len(t)} training, {len(v)} validation"
    x = tuple(test or ())
    if x:
        how += f", {len(x)} test"
    if {row_id(r) for r in v} == {row_id(r) for r in t}:
        warnings.append(SAME_AS_TRAIN)
    return _finish(Splits(t, v, x, ""), how, warnings, row_id, noun)


def _split(
    rows: list[R], shares: tuple[float, float, float], seed: int
) -> tuple[tuple[R, ...], tuple[R, ...], tuple[R, ...]]:
    n = len(rows)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = round(n * shares[2])
    n_val = max(1, round(n * shares[1]))
    n_test = min(n_test, n - n_val - 1)
    n_train = n - n_val - n_test
    if n_train < 1:
        n_val, n_train = n - n_test - 1, 1
    chosen_val = set(order[:n_val])
    chosen_test = set(order[n_val : n_val + n_test])

    def part(ids: set[int]) -> tuple[R, ...]:
        return tuple(rows[i] for i in range(n) if i in ids)

    chosen_train = set(range(n)) - chosen_val - chosen_test
    return part(chosen_train), part(chosen_val), part(chosen_test)


def _finish(
    parts: Splits[R], how: str, warnings: list[str], row_id: Callable[[R], str], noun: str
) -> Splits[R]:
    for name, rows in (("training", parts.train), ("validation", parts.val), ("test", parts.test)):
        _check_unique(rows, row_id, f"{name} {noun}")
    seen = {row_id(r) for r in (*parts.train, *parts.val)}
    leaked = sorted(row_id(r) for r in parts.test if row_id(r) in seen)
    if leaked:
        warnings.append(
            f"test {noun} also in training or validation: {', '.join(leaked[:5])}; the test "
            "score is then not a held-out measure"
        )
    return Splits(parts.train, parts.val, parts.test, how, tuple(warnings))


def _check_unique(rows: Sequence[R], row_id: Callable[[R], str], noun: str) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        rid = row_id(row)
        folded = rid.casefold()
        if folded in seen:
            raise PromptOptInputError(
                f"{noun}: {seen[folded]!r} and {rid!r} share an id; give each its own"
            )
        seen[folded] = rid


class MinibatchSampler:
    """Minibatches of training rows: the next rows of a shuffled cycle, reshuffled each time
    round, so every row is drawn as often as any other (gepa's epoch sampler). ``skip``
    leaves rows out (the "unsolved" sampler skips rows the parent already scores perfectly
    on); a batch may then be smaller, or empty when every row is skipped."""

    def __init__(self, rows: Sequence[str], rng: random.Random) -> None:
        self.rows, self.rng = tuple(rows), rng
        self._cycle: list[str] = []

    def next(self, size: int, skip: Callable[[str], bool] = lambda row: False) -> tuple[str, ...]:
        batch: list[str] = []
        for _ in range(len(self.rows)):
            if len(batch) == size:
                break
            if not self._cycle:
                self._cycle = list(self.rows)
                self.rng.shuffle(self._cycle)
            row = self._cycle.pop(0)
            if row not in batch and not skip(row):
                batch.append(row)
        return tuple(batch)
