"""SANTEXT+, PhraseDP and InferDPT against closed forms written from their references.

Every expected distribution here is computed in the test from the reference's formula
(SanText.py's ``cal_probability`` and ``SanText_plus``, techhse's
``differentially_private_replacement``, InferDPT's ``func.py``), not from the class's own
``probabilities()``; the samplers are then checked against those closed forms.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from privacy_checks import (
    CORPUS,
    TOY,
    chi_square_ok,
    softmax,
    toy_space,
    vec,
    worst_log_ratio,
)

from flows.medmcqa.privacy import (
    InferDPT,
    PhraseDP,
    SanTextPlus,
    TableEmbedder,
    TokenSpace,
    clean_candidates,
)

# -- SANTEXT+ -------------------------------------------------------------------------------

SENSITIVE = ["aspirin", "insulin", "sepsis", "gout"]
"""run_SanText.py with w = 0.5 over CORPUS: counts (+1 for a word with a vector) are the 10,
fever 6, cough 5, rash 4, aspirin 3, then heparin, insulin, sepsis, gout at 2 in order of
first sight (heparin's count stays 2: no vector). The rarest int(0.5·9) + 1 = 5 are aspirin,
heparin, insulin, sepsis, gout; heparin has no vector, so V_S holds the other four."""


def santext(epsilon: float, **options: object) -> SanTextPlus:
    return SanTextPlus(toy_space(), epsilon, w=0.5, frequencies=CORPUS, rng=0, **options)  # type: ignore[arg-type]


def eq1(x: str, epsilon: float) -> np.ndarray:
    """SanText's Eq. 1 over V_S: softmax(ε · (-d(x, y)) / 2)."""
    return softmax(np.asarray([epsilon * -np.linalg.norm(vec(x) - vec(y)) / 2 for y in SENSITIVE]))


def test_santext_sensitive_words_are_the_rarest_in_the_corpus_not_the_vocabulary_order() -> None:
    mech = santext(1.0)
    assert [mech.space.words[j] for j in mech.sensitive] == ["gout", "aspirin", "insulin", "sepsis"]
    assert sorted(w for w in TOY if mech.is_sensitive(w)) == sorted(SENSITIVE)
    # "gout" comes first in the vocabulary, "the" second: by vocabulary order "the" would be
    # among the rarest and "gout" among the most frequent
    assert not mech.is_sensitive("the") and mech.is_sensitive("gout")


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_santext_replacement_is_eq1_exactly(epsilon: float) -> None:
    mech = santext(epsilon)
    order = [mech.space.words[j] for j in mech.sensitive]
    for x in TOY:
        expected = dict(zip(SENSITIVE, eq1(x, epsilon), strict=True))
        got = dict(zip(order, mech.replacement_probabilities(x), strict=True))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("epsilon", [1.0, 2.0])
def test_santext_whole_distribution_keeps_non_sensitive_words_with_1_minus_p(
    epsilon: float,
) -> None:
    mech = santext(epsilon, p=0.3)
    for x in ("the", "fever", "rash"):  # non-sensitive
        expected = {y: 0.3 * q for y, q in zip(SENSITIVE, eq1(x, epsilon), strict=True)}
        expected[x] = 0.7
        assert mech.probabilities(x) == pytest.approx(expected, rel=1e-9)
    for x in SENSITIVE:
        expected = dict(zip(SENSITIVE, eq1(x, epsilon), strict=True))
        assert mech.probabilities(x) == pytest.approx(expected, rel=1e-9)


def test_santext_samplers_match_the_closed_form() -> None:
    mech = santext(1.0, p=0.3)
    rng = np.random.default_rng(7)
    for x in ("fever", "sepsis"):
        expected = {y: q for y, q in zip(SENSITIVE, eq1(x, 1.0), strict=True)}
        if x == "fever":
            expected = {y: 0.3 * q for y, q in expected.items()} | {"fever": 0.7}
        draws = Counter(mech.sanitise_word(x, rng) for _ in range(4000))
        assert set(draws) <= set(expected)
        assert chi_square_ok([draws[y] for y in expected], list(expected.values()))


@pytest.mark.parametrize(("variant", "pool"), [("reference", 9), ("strict", 4)])
def test_santext_unknown_words_are_replaced_uniformly(variant: str, pool: int) -> None:
    """SanText_plus: an out-of-vocabulary word becomes a uniform draw from all the words
    (corpus and vocabulary: 9 here); strict draws from V_S (4)."""
    mech = santext(1.0, variant=variant)
    rng = np.random.default_rng(3)
    draws = Counter(mech.sanitise_word("paracetamol", rng) for _ in range(3000))
    assert "paracetamol" not in draws
    everything = [*TOY, "heparin"] if variant == "reference" else SENSITIVE
    assert set(draws) <= set(everything) and len(everything) == pool
    assert chi_square_ok([draws[y] for y in everything], [1 / pool] * pool)
    assert mech.probabilities("paracetamol") == pytest.approx(dict.fromkeys(everything, 1 / pool))


def test_santext_strict_replaces_every_word_by_eq1() -> None:
    mech = santext(2.0, variant="strict")
    for x in TOY:
        expected = dict(zip(SENSITIVE, eq1(x, 2.0), strict=True))
        assert mech.probabilities(x) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_santext_spends_eps_d_plus_ln_1_over_p_and_strict_eps_d(epsilon: float) -> None:
    """The paper's Theorem 2: for y in V_S, |ln Pr[y|x] - ln Pr[y|x']| <= ε·d + ln(1/p);
    strict (p = 1): ε·d. Kept non-sensitive words are outside every bound."""
    p = 0.3
    for variant, extra in (("reference", math.log(1 / p)), ("strict", 0.0)):
        mech = santext(epsilon, p=p, variant=variant)
        worst_excess = -math.inf
        for a, b in itertools.permutations(TOY, 2):
            pa, pb = mech.probabilities(a), mech.probabilities(b)
            d = float(np.linalg.norm(vec(a) - vec(b)))
            loss = max(abs(math.log(pa[y]) - math.log(pb[y])) for y in SENSITIVE)
            worst_excess = max(worst_excess, loss - epsilon * d)
        assert worst_excess <= extra + 1e-9
    assert "ln(1/p)" in santext(1.0, p=p).bound() and "1.20" in santext(1.0, p=p).bound()


def test_santext_reaches_the_ln_1_over_p_term_for_a_rare_word_next_to_a_common_one() -> None:
    """A rare word 0.001 from a common one: the replacement outputs differ by about
    ln(1/p) = 1.20 at p = 0.3, not by ε·d = 0.001."""
    table = {"fever": [1.0, 0.2], "pyrexia": [1.0, 0.201], "the": [0.0, 0.0], "rash": [0.3, 1.1]}
    counts = {"the": 5, "fever": 4, "rash": 1, "pyrexia": 1}
    for variant, excess in (("reference", math.log(1 / 0.3)), ("strict", 0.0)):
        mech = SanTextPlus(
            TokenSpace.from_table(table), 1.0, w=0.25, frequencies=counts, variant=variant
        )
        assert mech.is_sensitive("pyrexia") and not mech.is_sensitive("fever")
        common, rare = mech.probabilities("fever"), mech.probabilities("pyrexia")
        loss = max(abs(math.log(common[y]) - math.log(rare[y])) for y in rare)
        assert loss == pytest.approx(excess, abs=0.003)


def test_a_santext_spending_three_times_its_budget_is_caught() -> None:
    class Broken(SanTextPlus):
        def _scores(self, x: np.ndarray) -> np.ndarray:
            return 3 * super()._scores(x)

    mech = Broken(toy_space(), 1.0, w=0.5, frequencies=CORPUS, rng=0)
    assert mech.replacement_probabilities("fever") != pytest.approx(eq1("fever", 1.0))


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
COS_FROM_NORTH = np.array([1.0, -1.0, 0.0, 0.0, 0.8])


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_phrasedp_reference_is_exp_eps_cos_and_strict_exp_eps_cos_over_4(epsilon: float) -> None:
    """techhse: p ∝ exp(-ε·(1 - cos)) = exp(ε·cos)·const; strict: exp(ε·cos / (2·2))."""
    reference = PhraseDP(COMPASS, epsilon, rng=0).probabilities("north", CANDIDATES)
    techhse = np.exp(-epsilon * (1 - COS_FROM_NORTH))
    assert reference == pytest.approx(techhse / techhse.sum(), rel=1e-9)
    strict = PhraseDP(COMPASS, epsilon, variant="strict").probabilities("north", CANDIDATES)
    assert strict == pytest.approx(softmax(epsilon * COS_FROM_NORTH / 4), rel=1e-9)
    # the highest to lowest probability ratio is exp(scale · (cos_max - cos_min))
    assert reference.max() / reference.min() == pytest.approx(math.exp(2 * epsilon))
    assert strict.max() / strict.min() == pytest.approx(math.exp(2 * epsilon / 4))


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_phrasedp_strict_is_eps_dp_and_the_reference_spends_more(epsilon: float) -> None:
    def worst(variant: str) -> float:
        mech = PhraseDP(COMPASS, epsilon, variant=variant)
        probs = [
            dict(zip(CANDIDATES, mech.probabilities(x, CANDIDATES), strict=True))
            for x in ("north", "south", "east", "up")
        ]
        return worst_log_ratio(probs)

    assert epsilon / 2 - 1e-9 <= worst("strict") <= epsilon + 1e-9
    assert epsilon < worst("reference") <= 4 * epsilon + 1e-9


def test_phrasedp_sampler_matches_the_closed_form() -> None:
    mech = PhraseDP(COMPASS, 3.0, rng=np.random.default_rng(11))
    draws = Counter(mech.select("north", CANDIDATES) for _ in range(3000))
    expected = softmax(3.0 * COS_FROM_NORTH)
    assert chi_square_ok([draws[c] for c in CANDIDATES], list(expected))


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


def tt(epsilon: float) -> float:
    """func.py: tt = 0.01658160142016071·ln(19.064721649556482·ε - 38.1294334077209) + 9.31108..."""
    return 0.01658160142016071 * math.log(epsilon * 19.064721649556482 - 38.1294334077209) + (
        9.311083811697406
    )


SKEWED = TokenSpace.from_table(  # three dimensions with ranges 1, 2 and 4
    {"a": [0.0, 0.0, 0.0], "b": [1.0, 0.5, 4.0], "c": [0.5, 2.0, 1.0], "d": [0.2, 1.0, 3.0]}
)
RANGES = np.array([1.0, 2.0, 4.0])


@pytest.mark.parametrize("epsilon", [0.5, 1.5, 2.0, 3.0, 5.0])
def test_inferdpt_noise_scale_is_the_range_over_eps_below_2_and_over_tt_from_2(
    epsilon: float,
) -> None:
    divisor = epsilon if epsilon < 2 else tt(epsilon)
    for variant in ("reference", "strict"):
        mech = InferDPT(SKEWED, epsilon, variant=variant, rng=0)
        assert mech.noise_scale == pytest.approx(RANGES / divisor, rel=1e-12)
    assert tt(2.0) == pytest.approx(9.12, abs=0.005) and tt(3.0) == pytest.approx(9.36, abs=0.005)


def test_inferdpt_radius_is_the_euclidean_norm_of_the_laplace_noise_vector() -> None:
    """With Y_j ~ Laplace(b_j): E[‖Y‖²] = Σ 2b_j² and E[‖Y‖⁴] = Σ 24b_j⁴ + Σ_{j≠k} 4b_j²b_k²
    (Laplace moments E[Y²] = 2b², E[Y⁴] = 24b⁴). An L1, L∞ or rescaled norm misses both."""
    mech = InferDPT(SKEWED, 1.0, rng=np.random.default_rng(9))
    b = RANGES / 1.0
    r2 = np.array([mech.radius() for _ in range(20000)]) ** 2
    m2 = float(np.sum(2 * b**2))
    m4 = float(np.sum(24 * b**4) + 4 * (np.sum(b**2) ** 2 - np.sum(b**4)))
    se2 = math.sqrt((m4 - m2**2) / len(r2))
    assert abs(r2.mean() - m2) < 4 * se2  # se2 is about 1.6 % of m2
    assert r2.mean() == pytest.approx(m2, rel=0.07)
    assert np.mean(r2**2) == pytest.approx(m4, rel=0.2)


def distances_from(word: str, space: TokenSpace) -> np.ndarray:
    return np.linalg.norm(space.vectors - space.vectors[space.index[word]], axis=1)


@pytest.mark.parametrize("r", [0.8, 1.0, 1.3, 1.6, 2.5])
def test_inferdpt_choice_given_a_radius_is_the_authors_and_strict_clips_at_zero(r: float) -> None:
    space, epsilon = toy_space(), 1.5
    d = distances_from("fever", space)
    inside = [w for w, dist in zip(space.words, d, strict=True) if dist < r]
    u = {w: (r - dist) / r for w, dist in zip(space.words, d, strict=True)}
    # func.py: close tokens have d < r, p ∝ exp(ε/(2·1) · (r - d)/r)
    expected = dict(
        zip(inside, softmax(np.array([epsilon / 2 * u[w] for w in inside])), strict=True)
    )
    indices, probs = InferDPT(space, epsilon).probabilities_given_radius("fever", r)
    got = {space.words[i]: float(q) for i, q in zip(indices, probs, strict=True)}
    assert got == pytest.approx(expected, rel=1e-9)
    # strict: every word, utility max(0, (r - d)/r)
    indices, probs = InferDPT(space, epsilon, variant="strict").probabilities_given_radius(
        "fever", r
    )
    clipped = softmax(np.array([epsilon / 2 * max(0.0, u[w]) for w in space.words]))
    assert [space.words[i] for i in indices] == list(space.words)
    assert probs == pytest.approx(clipped, rel=1e-9)


@pytest.mark.parametrize("epsilon", [1.0, 3.0])
def test_inferdpt_strict_is_eps_ldp_for_every_radius(epsilon: float) -> None:
    space = toy_space()
    mech = InferDPT(space, epsilon, variant="strict")
    for r in (0.3, 1.0, 2.0, 5.0):
        dists = []
        for x in TOY:
            indices, probs = mech.probabilities_given_radius(x, r)
            dists.append({space.words[i]: float(q) for i, q in zip(indices, probs, strict=True)})
        assert worst_log_ratio(dists) <= epsilon + 1e-9
    reference = InferDPT(space, epsilon)
    lists = [{space.words[i] for i in reference.probabilities_given_radius(x, 1.0)[0]} for x in TOY]
    assert len({frozenset(s) for s in lists}) > 1  # the reference's lists depend on the word


def test_inferdpt_sampler_with_a_fixed_radius_matches_the_closed_form() -> None:
    space, epsilon, r = toy_space(), 1.5, 1.3

    class FixedRadius(InferDPT):
        def radius(self, rng: np.random.Generator | None = None) -> float:
            return r

    d = distances_from("fever", space)
    inside = [w for w, dist in zip(space.words, d, strict=True) if dist < r]
    expected = softmax(
        np.array(
            [
                epsilon / 2 * (r - dist) / r
                for w, dist in zip(space.words, d, strict=True)
                if w in inside
            ]
        )
    )
    fixed = FixedRadius(space, epsilon, rng=np.random.default_rng(5))
    draws = Counter(fixed.sanitise_word("fever") for _ in range(3000))
    assert set(draws) <= set(inside)
    assert chi_square_ok([draws[w] for w in inside], list(expected))


def test_inferdpt_numbers_become_integers_from_1_to_1000_and_unknown_words_are_dropped() -> None:
    space = toy_space()
    out = InferDPT(space, 2.0, rng=4).sanitise("Fever 39.5 for 3 days")
    assert out == InferDPT(space, 2.0, rng=4).sanitise("Fever 39.5 for 3 days")
    tokens = out.split()
    assert len(tokens) == 3  # "for" and "days" have no vector: perturb_sentence drops them
    assert tokens[1].isdigit() and tokens[2].isdigit()
    assert tokens[0].lower() in space.index
    rng = np.random.default_rng(0)
    numbers = {int(InferDPT(space, 1.0).sanitise_word("7", rng)) for _ in range(3000)}
    assert min(numbers) >= 1 and max(numbers) <= 1000 and len(numbers) > 900
    strict = InferDPT(space, 2.0, variant="strict", rng=1)
    assert {strict.sanitise_word("paracetamol") for _ in range(200)} <= set(space.words)
