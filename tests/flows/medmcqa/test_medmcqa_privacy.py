"""The sanitisers' privacy bounds, exactly from their closed forms, and their samplers."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from flows.medmcqa.privacy import (
    InferDPT,
    PhraseDP,
    SanTextPlus,
    TableEmbedder,
    TokenSpace,
    clean_candidates,
)

TOY = {  # a tiny 2-D vocabulary; ranks follow the order (first = most frequent)
    "the": (0.0, 0.0),
    "fever": (1.0, 0.2),
    "cough": (1.2, -0.1),
    "rash": (0.3, 1.1),
    "aspirin": (-0.9, 0.4),
    "insulin": (-1.1, -0.6),
    "sepsis": (2.0, 1.5),
    "gout": (-0.2, -1.4),
}


def toy_space() -> TokenSpace:
    return TokenSpace.from_table({w: list(v) for w, v in TOY.items()})


def chi_square_ok(counts: Sequence[int], probs: Sequence[float]) -> bool:
    """Chi-square goodness of fit at the 0.1 % level (Wilson-Hilferty critical value),
    merging cells expected below 5 into one."""
    n = sum(counts)
    pairs = sorted(zip(probs, counts, strict=True), reverse=True)
    merged: list[tuple[float, int]] = []
    rest_p, rest_c = 0.0, 0
    for p, c in pairs:
        if p * n >= 5:
            merged.append((p, c))
        else:
            rest_p, rest_c = rest_p + p, rest_c + c
    if rest_p > 0:
        merged.append((rest_p, rest_c))
    if len(merged) < 2:
        return True
    stat = sum((c - p * n) ** 2 / (p * n) for p, c in merged)
    df = len(merged) - 1
    z = 3.090  # upper 0.1 % of the standard normal
    critical = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return stat <= critical


def metric_dp_slack(probs: Callable[[str], np.ndarray], space: TokenSpace, epsilon: float) -> float:
    """max over input pairs and outputs of |log p(y|x) - log p(y|x')| / (ε d(x, x'))."""
    worst = 0.0
    for a, b in itertools.combinations(space.words, 2):
        d = float(np.linalg.norm(space.vectors[space.index[a]] - space.vectors[space.index[b]]))
        loss = float(np.max(np.abs(np.log(probs(a)) - np.log(probs(b)))))
        worst = max(worst, loss / (epsilon * d))
    return worst


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_santext_replacement_is_metric_dp_for_every_pair_of_words(epsilon: float) -> None:
    mech = SanTextPlus(toy_space(), epsilon, w=0.5, rng=0)
    assert metric_dp_slack(mech.replacement_probabilities, mech.space, epsilon) <= 1 + 1e-6


def test_santext_outputs_for_sensitive_words_are_metric_dp_and_kept_words_carry_none() -> None:
    mech = SanTextPlus(toy_space(), 1.0, w=0.5, p=0.3, rng=0)
    sensitive = [w for w in TOY if mech.is_sensitive(w)]
    assert sensitive == ["aspirin", "insulin", "sepsis", "gout"]  # the rarest half
    outputs = [mech.space.words[j] for j in mech.sensitive]
    for a, b in itertools.combinations(sensitive, 2):
        pa, pb = mech.probabilities(a), mech.probabilities(b)
        d = float(np.linalg.norm(np.subtract(TOY[a], TOY[b])))
        assert max(abs(math.log(pa[y]) - math.log(pb[y])) for y in outputs) <= d * (1 + 1e-6)
    kept = mech.probabilities("fever")
    assert kept["fever"] == pytest.approx(0.7)
    assert sum(kept.values()) == pytest.approx(1.0)


def test_a_mechanism_spending_three_times_its_budget_is_caught() -> None:
    class Broken(SanTextPlus):
        def _scores(self, x: np.ndarray) -> np.ndarray:
            return 3 * super()._scores(x)

    mech = Broken(toy_space(), 1.0, w=0.5, rng=0)
    assert metric_dp_slack(mech.replacement_probabilities, mech.space, 1.0) > 1.5


def test_santext_sampler_matches_its_probabilities() -> None:
    mech = SanTextPlus(toy_space(), 1.0, w=0.5, p=0.3, rng=np.random.default_rng(7))
    for word in ("fever", "sepsis"):
        draws = Counter(mech.sanitise_word(word) for _ in range(4000))
        probs = mech.probabilities(word)
        assert set(draws) <= set(probs)
        assert chi_square_ok([draws[y] for y in probs], list(probs.values()))


def test_santext_keeps_spacing_and_punctuation_and_repeats_for_a_seed() -> None:
    space = toy_space()
    text = "Fever, cough; rash?"
    first = SanTextPlus(space, 2.0, rng=3).sanitise(text)
    assert first == SanTextPlus(space, 2.0, rng=3).sanitise(text)
    assert first.count(",") == 1 and first.endswith("?") and first.count(" ") == 2


# -- PhraseDP -------------------------------------------------------------------------------

COMPASS = TableEmbedder(
    TokenSpace.from_table(
        {"north": [0, 1], "south": [0, -1], "east": [1, 0], "west": [-1, 0], "up": [0.6, 0.8]}
    )
)
CANDIDATES = ["north", "south", "east", "west", "up"]


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_phrasedp_selection_is_pure_dp_for_a_fixed_candidate_set(epsilon: float) -> None:
    mech = PhraseDP(COMPASS, epsilon, rng=0)
    probs = {x: mech.probabilities(x, CANDIDATES) for x in ("north", "south", "east", "up")}
    worst = max(
        float(np.max(np.abs(np.log(probs[a]) - np.log(probs[b]))))
        for a, b in itertools.combinations(probs, 2)
    )
    assert worst <= epsilon + 1e-9
    # opposite inputs swing every utility by 2: half the budget is really spent
    assert worst >= epsilon / 2 - 1e-9


def test_phrasedp_uses_cosine_over_four_and_a_broken_copy_is_caught() -> None:
    mech = PhraseDP(COMPASS, 2.0, rng=0)
    probs = mech.probabilities("north", CANDIDATES)
    cos = np.array([1.0, -1.0, 0.0, 0.0, 0.8])
    expected = np.exp(2.0 * cos / 4) / np.exp(2.0 * cos / 4).sum()
    assert probs == pytest.approx(expected)

    class Broken(PhraseDP):
        def probabilities_from_scores(self, scores: np.ndarray) -> np.ndarray:
            return PhraseDP(self.embedder, 3 * self.epsilon).probabilities_from_scores(scores)

    bad = Broken(COMPASS, 1.0)
    loss = np.max(
        np.abs(
            np.log(bad.probabilities("north", CANDIDATES))
            - np.log(bad.probabilities("south", CANDIDATES))
        )
    )
    assert loss > 1.0


def test_phrasedp_sampler_matches_its_probabilities() -> None:
    mech = PhraseDP(COMPASS, 3.0, rng=np.random.default_rng(11))
    draws = Counter(mech.select("north", CANDIDATES) for _ in range(3000))
    probs = mech.probabilities("north", CANDIDATES)
    assert chi_square_ok([draws[c] for c in CANDIDATES], list(probs))


def test_candidates_drop_copies_duplicates_and_empty_ones() -> None:
    original = "Which drug reverses heparin?"
    got = clean_candidates(
        original,
        [
            "which drug reverses HEPARIN",
            " What reverses heparin? ",
            "What reverses heparin",
            "",
            "Name the heparin antidote.",
        ],
    )
    assert got == ["What reverses heparin?", "Name the heparin antidote."]


# -- InferDPT -------------------------------------------------------------------------------


def test_inferdpt_noise_scale_is_each_dimensions_range_over_epsilon() -> None:
    mech = InferDPT(toy_space(), 2.0, rng=0)
    vectors = np.array(list(TOY.values()))
    assert mech.noise_scale == pytest.approx((vectors.max(0) - vectors.min(0)) / 2.0)


def test_inferdpt_adjacency_and_choice_follow_the_stated_algorithm() -> None:
    space, epsilon, r = toy_space(), 1.5, 1.3
    mech = InferDPT(space, epsilon, rng=0)
    indices, probs = mech.adjacency_probabilities("fever", r)
    d = np.linalg.norm(space.vectors - np.array(TOY["fever"]), axis=1)
    assert sorted(space.words[i] for i in indices) == sorted(
        w for w, dist in zip(space.words, d, strict=True) if dist <= r
    )
    weights = np.exp(epsilon * (r - d[indices]) / r / 2)
    assert probs == pytest.approx(weights / weights.sum())

    class FixedRadius(InferDPT):
        def radius(self, vector: np.ndarray, rng: np.random.Generator | None = None) -> float:
            return r

    fixed = FixedRadius(space, epsilon, rng=np.random.default_rng(5))
    draws = Counter(fixed.sanitise_word("fever") for _ in range(3000))
    assert set(draws) <= {space.words[i] for i in indices}
    assert chi_square_ok([draws[space.words[i]] for i in indices], list(probs))


def test_inferdpt_radius_is_the_norm_of_laplace_noise() -> None:
    line = TokenSpace.from_table({"a": [0.0], "b": [0.5], "c": [2.0]})  # range 2
    mech = InferDPT(line, 4.0, rng=np.random.default_rng(9))
    radii = np.array([mech.radius(np.zeros(1)) for _ in range(4000)])
    # |Laplace(b)| is exponential with mean b = range / ε = 0.5
    assert radii.mean() == pytest.approx(0.5, rel=0.06)
    for t in (0.25, 0.5, 1.0):
        assert np.mean(radii <= t) == pytest.approx(1 - math.exp(-t / 0.5), abs=0.03)


def test_inferdpt_turns_numbers_into_random_integers_and_repeats_for_a_seed() -> None:
    space = toy_space()
    out = InferDPT(space, 1.0, rng=4).sanitise("Fever 39.5 for 3 days")
    assert out == InferDPT(space, 1.0, rng=4).sanitise("Fever 39.5 for 3 days")
    tokens = out.split()
    assert len(tokens) == 5
    assert tokens[1].isdigit() and tokens[3].isdigit() and int(tokens[1]) < 1000
    assert all(t in space.index for t in (tokens[0].lower(), tokens[2], tokens[4]))
