"""CusText+ and CluSanT against closed forms written from their authors' code.

CusText+: ``get_customized_mapping`` (conservative) and ``generate_new_sents_s1`` of
github sai4july/CusText; CluSanT: ``create_clusters`` and ``replace_word`` of github
AwonSomeSauce/CluSanT, and the paper's Fig. 2 for the strict variant. Expected
distributions are computed here from those formulas, not from the classes.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from privacy_checks import chi_square_ok, softmax, worst_log_ratio

from flows.medmcqa.privacy import CluSanT, Clustering, CusTextPlus, TokenSpace

# -- CusText+ -------------------------------------------------------------------------------

ANGLES = {  # three groups of directions; lengths differ (CusText compares unit vectors)
    "fever": 0,
    "pyrexia": 8,
    "febrile": -10,
    "cough": 120,
    "sputum": 128,
    "wheeze": 110,
    "rash": 240,
    "hives": 250,
    "the": 232,
}
GROUPS = [["cough", "sputum", "wheeze"], ["fever", "pyrexia", "febrile"], ["rash", "hives", "the"]]
COUNTS = {"cough": 7, "fever": 5, "rash": 3, "the": 2, "heparin": 1}  # seeds: cough, fever, rash


def angle_space() -> TokenSpace:
    table = {
        w: [(1 + i % 3) * math.cos(math.radians(a)), (1 + i % 3) * math.sin(math.radians(a))]
        for i, (w, a) in enumerate(ANGLES.items())
    }
    return TokenSpace.from_table(table)


def custext(epsilon: float, variant: str = "reference") -> CusTextPlus:
    return CusTextPlus(
        angle_space(),
        epsilon,
        top_k=3,
        frequencies=COUNTS,
        variant=variant,
        rng=0,  # type: ignore[arg-type]
    )


def custext_closed_form(x: str, epsilon: float) -> dict[str, float]:
    """utils.py: sims = cosines to the cluster, u = (s - min)/(max - min), p ∝ exp(ε·u/2)."""
    group = next(g for g in GROUPS if x in g)
    s = np.array([math.cos(math.radians(ANGLES[x] - ANGLES[y])) for y in group])
    u = (s - s.min()) / (s.max() - s.min())
    return dict(zip(group, softmax(epsilon * u / 2), strict=True))


def test_custext_clusters_are_the_top_k_of_each_corpus_word_in_frequency_order() -> None:
    mech = custext(1.0)
    space = mech.space
    for group in GROUPS:
        for x in group:
            members = {space.words[j] for j in mech.mapping.members[space.index[x]]}
            assert members == set(group)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_custext_draw_is_the_authors_exponential_mechanism(epsilon: float) -> None:
    mech = custext(epsilon, "strict")
    for x in ANGLES:
        assert mech.probabilities(x) == pytest.approx(custext_closed_form(x, epsilon), rel=1e-9)
    reference = custext(epsilon)
    for x in ("fever", "cough", "hives"):
        assert reference.probabilities(x) == pytest.approx(
            custext_closed_form(x, epsilon), rel=1e-9
        )


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_custext_is_eps_dp_inside_a_cluster_and_unbounded_across(epsilon: float) -> None:
    mech = custext(epsilon, "strict")
    for group in GROUPS:
        worst = worst_log_ratio([mech.probabilities(x) for x in group])
        assert epsilon / 2 < worst <= epsilon + 1e-9
    assert worst_log_ratio([mech.probabilities("fever"), mech.probabilities("cough")]) == math.inf


def test_custext_sampler_matches_the_closed_form() -> None:
    mech, rng = custext(1.0), np.random.default_rng(4)
    expected = custext_closed_form("pyrexia", 1.0)
    draws = Counter(mech.sanitise_word("pyrexia", rng) for _ in range(3000))
    assert set(draws) <= set(expected)
    assert chi_square_ok([draws[y] for y in expected], list(expected.values()))


def test_custext_plus_keeps_stop_words_and_unknown_words_and_shifts_numbers() -> None:
    mech, rng = custext(1.0), np.random.default_rng(1)
    assert {mech.sanitise_word("the", rng) for _ in range(50)} == {"the"}
    assert {mech.sanitise_word("heparin", rng) for _ in range(50)} == {"heparin"}
    shifted = [int(mech.sanitise_word("39.5", rng)) for _ in range(3000)]
    assert min(shifted) >= 40 and max(shifted) <= 40 + 999  # round(39.5) + randint(1000)
    assert len(set(shifted)) > 900


def test_custext_strict_sanitises_stop_words_and_draws_unknown_words_and_numbers_blind() -> None:
    mech, rng = custext(1.0, "strict"), np.random.default_rng(2)
    draws = Counter(mech.sanitise_word("the", rng) for _ in range(3000))
    expected = custext_closed_form("the", 1.0)
    assert chi_square_ok([draws[y] for y in expected], list(expected.values()))
    unknown = Counter(mech.sanitise_word("heparin", rng) for _ in range(2700))
    assert "heparin" not in unknown
    assert chi_square_ok([unknown[w] for w in ANGLES], [1 / 9] * 9)
    numbers = [int(mech.sanitise_word("39.5", rng)) for _ in range(2000)]
    assert min(numbers) >= 1 and max(numbers) <= 1000


# -- CluSanT --------------------------------------------------------------------------------

POINTS = {  # three tight groups far from one another
    "a0": (0.0, 0.0),
    "a1": (0.3, 0.1),
    "a2": (0.1, 0.4),
    "b0": (2.0, 0.0),
    "b1": (2.2, 0.3),
    "b2": (1.8, 0.2),
    "c0": (0.0, 2.0),
    "c1": (0.2, 2.3),
    "c2": (-0.3, 1.9),
}
CLUSTERS = [["a0", "a1", "a2"], ["b0", "b1", "b2"], ["c0", "c1", "c2"]]
K = 1.5


def point_space() -> TokenSpace:
    return TokenSpace.from_table({w: list(v) for w, v in POINTS.items()})


def p(word: str) -> np.ndarray:
    return np.asarray(POINTS[word])


def clusant_closed_form(x: str, epsilon: float, variant: str) -> dict[str, float]:
    """Step 1: Pr[C] ∝ exp(-ε'·D(C_x, C)/2), D between K·centroids, ε' = ε (code) or ε/2
    (paper); step 2: Pr[y|C] ∝ exp(-ε'·d(x, y)/(2Δ)), Δ = diam C (code) or
    max(1, 2·max‖v - v̄‖) (strict's bound on the vocabulary's diameter)."""
    eps = epsilon if variant == "reference" else epsilon / 2
    centroids = [K * np.mean([p(w) for w in c], axis=0) for c in CLUSTERS]
    home = next(i for i, c in enumerate(CLUSTERS) if x in c)
    step1 = softmax(np.array([-eps * np.linalg.norm(centroids[home] - c) / 2 for c in centroids]))
    mean = np.mean([p(w) for w in POINTS], axis=0)
    spread = max(1.0, 2 * max(np.linalg.norm(p(w) - mean) for w in POINTS))
    out: dict[str, float] = {}
    for pc, cluster in zip(step1, CLUSTERS, strict=True):
        diameter = max(np.linalg.norm(p(a) - p(b)) for a, b in itertools.combinations(cluster, 2))
        delta = diameter if variant == "reference" else spread
        step2 = softmax(
            np.array([-eps * np.linalg.norm(p(x) - p(y)) / (2 * delta) for y in cluster])
        )
        out.update({y: float(pc * q) for y, q in zip(cluster, step2, strict=True)})
    return out


def clusant(epsilon: float, variant: str = "reference") -> CluSanT:
    return CluSanT(point_space(), epsilon, clusters=3, k=K, variant=variant, rng=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_clusant_clusters_are_each_first_words_nearest_remaining_words(seed: int) -> None:
    space = point_space()
    clustering = Clustering.build(space, 3, K, seed)
    assert sorted(sorted(space.words[i] for i in c) for c in clustering.clusters) == CLUSTERS
    # 9 words for 2 clusters: 4 a cluster while words remain (create_clusters' loop)
    assert sorted(len(c) for c in Clustering.build(space, 2, K, seed).clusters) == [1, 4, 4]


@pytest.mark.parametrize("variant", ["reference", "strict"])
@pytest.mark.parametrize("epsilon", [0.5, 1.0, 4.0])
def test_clusant_is_the_two_step_exponential_mechanism(variant: str, epsilon: float) -> None:
    mech = clusant(epsilon, variant)
    for x in POINTS:
        assert mech.probabilities(x) == pytest.approx(
            clusant_closed_form(x, epsilon, variant), rel=1e-6
        )


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 4.0])
def test_clusant_spends_eps_inside_a_cluster_and_strict_half_of_it(epsilon: float) -> None:
    reference, strict = clusant(epsilon), clusant(epsilon, "strict")
    for cluster in CLUSTERS:
        assert worst_log_ratio([reference.probabilities(x) for x in cluster]) <= epsilon + 1e-9
        assert worst_log_ratio([strict.probabilities(x) for x in cluster]) <= epsilon / 2 + 1e-9
    # across clusters, strict stays within (ε/2)·(D(Cx, Cx') + d(x, x')/Δ)
    centroids = {w: K * np.mean([p(v) for v in c], axis=0) for c in CLUSTERS for w in c}
    for a, b in itertools.combinations(POINTS, 2):
        bound = (epsilon / 2) * (
            np.linalg.norm(centroids[a] - centroids[b])
            + np.linalg.norm(p(a) - p(b)) / strict.sensitivity
        )
        pa, pb = strict.probabilities(a), strict.probabilities(b)
        assert worst_log_ratio([pa, pb]) <= bound + 1e-9


def test_clusant_sampler_matches_the_closed_form() -> None:
    mech, rng = clusant(1.0), np.random.default_rng(6)
    expected = clusant_closed_form("b1", 1.0, "reference")
    draws = Counter(mech.sanitise_word("b1", rng) for _ in range(4000))
    assert chi_square_ok([draws[y] for y in expected], list(expected.values()))


def test_clusant_keeps_unknown_words_and_strict_draws_them_uniformly() -> None:
    rng = np.random.default_rng(8)
    assert {clusant(1.0).sanitise_word("heparin", rng) for _ in range(50)} == {"heparin"}
    draws = Counter(clusant(1.0, "strict").sanitise_word("heparin", rng) for _ in range(2700))
    assert chi_square_ok([draws[w] for w in POINTS], [1 / 9] * 9)
