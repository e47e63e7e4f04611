"""MedMCQA sanitisers: what each spends, how many question words it keeps, and checks.

Run by hand: ``python benchmarks/medmcqa_privacy.py [--embedder hashed|minilm|both]
[--json PATH]``. For every mechanism, DP variant and ε it prints the formal bound the
mechanism states (``bound()``) and the share of the bundled sample's question words it left
unchanged (one seeded draw per question); then checks of the formulas against the
references, side by side:

- InferDPT: the authors' ``tt(ε)`` and how much less noise it draws than ``Δ/ε``;
- PhraseDP: over each question's simulated candidates, the highest to lowest probability
  ratio, and the total variation (TV) between the reference ``exp(ε·cos)`` and the strict
  ``exp(ε·cos/4)``;
- SANTEXT+: TV between the class's replacement distribution and SanText's
  ``cal_probability`` written out here, and the largest measured excess of the privacy loss
  over ``ε·d`` between two vocabulary words (at most ``ln(1/p)``);
- the share of question words outside the vocabulary (unknown words).

Writes every figure to JSON (default benchmarks/results/medmcqa_privacy.json).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
from _results import write_results

from flows.medmcqa import QuestionFile, sample_path
from flows.medmcqa.experiment import MechanismOptions
from flows.medmcqa.privacy import (
    BANDS,
    CluSanT,
    Clustering,
    CusTextMapping,
    CusTextPlus,
    Embedder,
    InferDPT,
    MiniLMEmbedder,
    PhraseDP,
    SanTextPlus,
    WordMechanism,
    clean_candidates,
    kept_words,
    noise_divisor,
    word_counts,
    words,
)
from flows.medmcqa.privacy.custext import corpus_order
from flows.medmcqa.run import hashed_embedder
from flows.medmcqa.simulate import SimulatedModels

EPSILONS = (1.0, 2.0, 3.0)
VARIANTS = ("reference", "strict")


def word_mechanisms(
    embedder: Embedder, corpus: dict[str, int], epsilon: float, variant: str, shared: dict[str, Any]
) -> list[WordMechanism]:
    space, options = embedder.token_space(), MechanismOptions()
    if "custext" not in shared:
        shared["custext"] = CusTextMapping.build(
            space, options.custext_top_k, corpus_order(space, corpus)
        )
        shared["clusant"] = Clustering.build(
            space, options.clusant_clusters, options.clusant_k, seed=0
        )
    common: dict[str, Any] = {"variant": variant, "rng": 0}
    return [
        InferDPT(space, epsilon, **common),
        SanTextPlus(space, epsilon, frequencies=corpus, **common),
        CusTextPlus(space, epsilon, frequencies=corpus, mapping=shared["custext"], **common),
        CluSanT(space, epsilon, clustering=shared["clusant"], **common),
    ]


def measure(name: str, embedder: Embedder) -> dict[str, Any]:
    questions = list(QuestionFile(sample_path()))
    corpus = dict(word_counts(q.question for q in questions))
    sim, space = SimulatedModels(), embedder.token_space()
    candidates = {
        q.id: clean_candidates(
            q.question, [c for band, _ in BANDS for c in sim.paraphrases(q.question, band, 3)]
        )
        for q in questions
    }
    rows: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    for variant in VARIANTS:
        for eps in EPSILONS:
            phrasedp = PhraseDP(embedder, eps, variant=variant)  # type: ignore[arg-type]
            kept = total = 0
            for i, q in enumerate(questions):
                chosen = phrasedp.select(q.question, candidates[q.id], np.random.default_rng(i))
                k, n = kept_words(q.question, chosen)
                kept, total = kept + k, total + n
            rows.append(row("phrasedp", variant, eps, phrasedp.bound(), kept, total, 0.0))
            for mech in word_mechanisms(embedder, corpus, eps, variant, shared):  # type: ignore[arg-type]
                started = time.perf_counter()
                kept = total = 0
                for i, q in enumerate(questions):
                    done = mech.sanitised(q.question, np.random.default_rng(i))
                    kept, total = kept + done.kept, total + done.words
                took = time.perf_counter() - started
                rows.append(row(mech.name, variant, eps, mech.bound(), kept, total, took))
    all_words = [w for q in questions for w in words(q.question)]
    return {
        "embedder": name,
        "vocabulary": len(space.words),
        "unknown_word_share": sum(w not in space.index for w in all_words) / len(all_words),
        "rows": rows,
        "checks": checks(embedder, corpus, questions, candidates),
    }


def row(
    mechanism: str, variant: str, eps: float, bound: str, kept: int, total: int, took: float
) -> dict[str, Any]:
    return {
        "mechanism": mechanism,
        "variant": variant,
        "epsilon": eps,
        "bound": bound,
        "words_kept": kept / total,
        "seconds": round(took, 3),
    }


def checks(
    embedder: Embedder, corpus: dict[str, int], questions: list[Any], candidates: dict[str, Any]
) -> dict[str, Any]:
    space = embedder.token_space()
    found: dict[str, Any] = {
        "inferdpt_tt": {f"{e:g}": noise_divisor(e) for e in (2.0, 3.0)},
        "inferdpt_less_noise_than_delta_over_eps": {
            f"{e:g}": noise_divisor(e) / e for e in (2.0, 3.0)
        },
    }
    for eps in EPSILONS:
        ref = PhraseDP(embedder, eps)  # type: ignore[arg-type]
        strict = PhraseDP(embedder, eps, variant="strict")  # type: ignore[arg-type]
        ratios: dict[str, list[float]] = {"reference": [], "strict": []}
        tv = []
        for q in questions:
            scores = ref.scores(q.question, candidates[q.id])
            p, s = ref.probabilities_from_scores(scores), strict.probabilities_from_scores(scores)
            ratios["reference"].append(float(p.max() / p.min()))
            ratios["strict"].append(float(s.max() / s.min()))
            tv.append(0.5 * float(np.abs(p - s).sum()))
        found[f"phrasedp_eps{eps:g}"] = {
            "max_to_min_ratio_median": {k: float(np.median(v)) for k, v in ratios.items()},
            "tv_reference_vs_strict_mean": float(np.mean(tv)),
        }
    # SANTEXT+: the class against SanText's cal_probability over V_S, and the ln(1/p) term
    mech = SanTextPlus(space, 1.0, frequencies=corpus)
    targets = space.vectors[mech.sensitive]
    rng = np.random.default_rng(0)
    sample = rng.choice(len(space.words), size=min(200, len(space.words)), replace=False)
    worst_tv, worst_excess = 0.0, -math.inf
    p = mech.p
    for i in sample:
        word = space.words[i]
        logits = -1.0 * np.linalg.norm(targets - space.vectors[i], axis=1) / 2
        expected = np.exp(logits - logits.max())
        expected /= expected.sum()
        worst_tv = max(
            worst_tv, 0.5 * float(np.abs(mech.replacement_probabilities(word) - expected).sum())
        )
    sensitive = [space.words[j] for j in mech.sensitive[:40]]
    common = [w for w in space.words if not mech.is_sensitive(w)][:40]
    for a in common:
        for b in sensitive:
            pa = p * mech.replacement_probabilities(a)
            pb = mech.replacement_probabilities(b)
            d = float(np.linalg.norm(space.vectors[space.index[a]] - space.vectors[space.index[b]]))
            loss = float(np.max(np.abs(np.log(pa) - np.log(pb))))
            worst_excess = max(worst_excess, loss - d)
    found["santext_tv_vs_sanText_cal_probability_max"] = worst_tv
    found["santext_loss_minus_eps_d_max_eps1"] = worst_excess
    found["santext_ln_1_over_p"] = math.log(1 / p)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", choices=("hashed", "minilm", "both"), default="both")
    parser.add_argument("--json", default="benchmarks/results/medmcqa_privacy.json")
    args = parser.parse_args()
    embedders: list[tuple[str, Embedder]] = []
    if args.embedder in ("hashed", "both"):
        embedders.append(("hashed", hashed_embedder(QuestionFile(sample_path()))))
    if args.embedder in ("minilm", "both"):
        try:
            embedders.append(("minilm", MiniLMEmbedder()))
        except Exception as exc:  # the ml extra is optional
            print(f"minilm skipped: {exc}")
    results = [measure(name, embedder) for name, embedder in embedders]
    for found in results:
        print(
            f"\n{found['embedder']} embedder: {found['vocabulary']} words; "
            f"{found['unknown_word_share']:.1%} of question words unknown"
        )
        print(f"{'mechanism':<10} {'variant':<10} {'ε':>3} {'words kept':>10}  bound")
        for r in found["rows"]:
            print(
                f"{r['mechanism']:<10} {r['variant']:<10} {r['epsilon']:>3g} "
                f"{r['words_kept']:>10.1%}  {r['bound']}"
            )
        for key, value in found["checks"].items():
            print(f"{key}: {value}")
    write_results(args.json, results)


if __name__ == "__main__":
    main()
