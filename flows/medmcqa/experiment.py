"""The experiment's settings: models, embedder, grid, seed, DP variant and mechanism options.

``Experiment`` is what every node of the flow shares. It builds each sanitiser once per
(scenario, ε), seeds each cell's draws, and gives each cell a settings digest for its
checkpoint key, so a resumed run never reuses a cell that other settings would change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.store.codec import dumps
from flows.medmcqa.privacy import (
    VARIANTS,
    CluSanT,
    Clustering,
    CusTextMapping,
    CusTextPlus,
    Embedder,
    InferDPT,
    PhraseDP,
    SanTextPlus,
    Variant,
)
from flows.medmcqa.privacy.base import digest_counts
from flows.medmcqa.privacy.custext import corpus_order
from flows.medmcqa.simulate import Role, SimulatedModels
from flows.medmcqa.table import DEFAULT_SCENARIOS, MECHANISMS, SCENARIOS
from nodes.llm import LLMSettings

DEFAULT_EPSILONS = (1.0, 2.0, 3.0)
Mechanism = PhraseDP | InferDPT | SanTextPlus | CusTextPlus | CluSanT


class ExperimentError(FlowkitError, ValueError):
    """Options the experiment cannot run with (an unknown scenario, a bad ε or variant)."""


def check_scenarios(scenarios: Iterable[str]) -> tuple[str, ...]:
    """The scenarios in table order, each once; refuses unknown names."""
    chosen = {s.strip() for s in scenarios if s.strip()}
    unknown = chosen - set(SCENARIOS)
    if unknown or not chosen:
        raise ExperimentError(
            f"unknown scenario(s) {', '.join(sorted(unknown)) or '(none given)'}: choose from "
            f"{', '.join(SCENARIOS)}"
        )
    return tuple(s for s in SCENARIOS if s in chosen)


def check_epsilons(epsilons: Iterable[float]) -> tuple[float, ...]:
    """The ε values, sorted, each once; each must be a positive finite number."""
    values = sorted({float(e) for e in epsilons})
    if not values or not all(0 < e < float("inf") for e in values):
        raise ExperimentError(f"ε values must be positive numbers, got {values or 'none'}")
    return tuple(values)


@dataclass(frozen=True)
class MechanismOptions:
    """The mechanisms' parameters (defaults: the values techhse's experiment runs with)."""

    santext_p: float = 0.3
    """SANTEXT+: probability of replacing a non-sensitive word (README example, techhse)."""
    santext_w: float = 0.9
    """SANTEXT+: share of the words, the rarest, that are sensitive (README example)."""
    custext_top_k: int = 20
    """CusText+: words per cluster (the authors' README and argparse default)."""
    clusant_clusters: int = 336
    """CluSanT: number of clusters (techhse's)."""
    clusant_k: float = 16.0
    """CluSanT: the factor that pushes cluster centroids apart (techhse's ``K``)."""

    def __post_init__(self) -> None:
        if not 0 <= self.santext_p <= 1 or not 0 <= self.santext_w <= 1:
            raise ExperimentError(
                f"SANTEXT+ needs 0 <= p <= 1 and 0 <= w <= 1, got p={self.santext_p}, "
                f"w={self.santext_w}: check --santext-p and --santext-w"
            )
        if self.custext_top_k < 1 or self.clusant_clusters < 1 or not self.clusant_k > 0:
            raise ExperimentError(
                "--custext-top-k and --clusant-clusters must be at least 1, --clusant-k above 0"
            )

    def of(self, mechanism: str) -> dict[str, Any]:
        """The options one mechanism takes (keyword arguments of its class)."""
        found: dict[str, dict[str, Any]] = {
            "santext+": {"p": self.santext_p, "w": self.santext_w},
            "custext+": {"top_k": self.custext_top_k},
            "clusant": {"clusters": self.clusant_clusters, "k": self.clusant_k},
        }
        return found.get(mechanism, {})


class Job(NamedTuple):
    """One cell to compute; PhraseDP's carry the question's paraphrase candidates."""

    question_id: str
    scenario: str
    epsilon: float | None = None
    candidates: tuple[str, ...] = ()


def _describe(thing: Any) -> Any:
    """What of a local generator decides its replies (its model and decoding settings)."""
    if dataclasses.is_dataclass(thing) and not isinstance(thing, type):
        found = dataclasses.asdict(thing)
        return {k: found[k] for k in ("model", "max_new_tokens", "temperature") if k in found}
    return getattr(thing, "__qualname__", type(thing).__qualname__)


@dataclass
class Experiment:
    """Everything the nodes share: the two models, the embedder, the grid and the seed.

    ``local`` and ``remote`` are LLM settings whose ``limiter`` names the runner's budget
    (``local`` and ``remote`` by default). ``local_generator`` (e.g. a ``nodes.models``
    ``TextGenerator``) answers for the local side instead of an endpoint: one prompt per
    call, in a thread, under the local limiter. ``simulator`` supplies reply text when a
    provider is the simulated one. ``variant`` chooses every mechanism's ``reference`` (the
    authors' code) or ``strict`` form; ``options`` their parameters; ``corpus`` the word
    counts of the task's questions (SANTEXT+'s sensitive words and CusText+'s cluster order
    come from it; None: the embedder's own frequency ranks). Mechanisms are built once per
    (scenario, ε) and shared by every question; each cell draws from its own generator,
    seeded by the seed, question, scenario and ε, so a rerun sanitises identically.
    """

    local: LLMSettings
    remote: LLMSettings
    embedder: Embedder
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    seed: int = 0
    simulator: SimulatedModels = field(default_factory=SimulatedModels)
    paraphrases_per_band: int = 3
    local_generator: Callable[[Sequence[str]], list[str]] | None = None
    variant: Variant = "reference"
    options: MechanismOptions = field(default_factory=MechanismOptions)
    corpus: Mapping[str, int] | None = None
    _mechanisms: dict[tuple[str, float], Mechanism] = field(
        default_factory=dict, init=False, repr=False
    )
    _shared: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _keys: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _key_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scenarios = check_scenarios(self.scenarios)
        self.epsilons = check_epsilons(self.epsilons)
        if self.variant not in VARIANTS:
            raise ExperimentError(
                f"unknown DP variant {self.variant!r}: choose 'reference' (the authors' code) "
                "or 'strict' (spends exactly ε)"
            )
        for settings in (self.local, self.remote):
            settings.check()

    @property
    def cells_per_question(self) -> int:
        private = sum(s in MECHANISMS for s in self.scenarios)
        return len(self.scenarios) - private + private * len(self.epsilons)

    def settings(self, role: Role) -> LLMSettings:
        return self.local if role == "local" else self.remote

    def mechanism(self, scenario: str, epsilon: float) -> Mechanism:
        """The sanitiser of a private scenario at ε, built on first use (thread-safe)."""
        with self._lock:
            found = self._mechanisms.get((scenario, epsilon))
            if found is None:
                found = self._mechanisms[(scenario, epsilon)] = self._build(scenario, epsilon)
            return found

    def _build(self, scenario: str, epsilon: float) -> Mechanism:
        kind, variant, seed = MECHANISMS[scenario], self.variant, self.seed
        options = self.options.of(kind)
        if kind == "phrasedp":
            return PhraseDP(self.embedder, epsilon, variant=variant, rng=seed)
        space = self.embedder.token_space()
        if kind == "inferdpt":
            return InferDPT(space, epsilon, variant=variant, rng=seed)
        if kind == "santext+":
            return SanTextPlus(
                space, epsilon, frequencies=self.corpus, variant=variant, rng=seed, **options
            )
        if kind == "custext+":
            if "custext" not in self._shared:
                order = corpus_order(space, self.corpus)
                self._shared["custext"] = CusTextMapping.build(space, options["top_k"], order)
            return CusTextPlus(
                space,
                epsilon,
                frequencies=self.corpus,
                variant=variant,
                rng=seed,
                mapping=self._shared["custext"],
                **options,
            )
        if "clusant" not in self._shared:
            self._shared["clusant"] = Clustering.build(
                space, options["clusters"], options["k"], seed
            )
        return CluSanT(
            space,
            epsilon,
            variant=variant,
            rng=seed,
            cluster_seed=seed,
            clustering=self._shared["clusant"],
            **options,
        )

    def bounds(self) -> dict[tuple[str, float], str]:
        """What each private scenario's mechanism spends at each ε of the grid (per word;
        per question for PhraseDP), from the mechanisms themselves (built if need be)."""
        return {
            (s, e): self.mechanism(s, e).bound()
            for s in self.scenarios
            if s in MECHANISMS
            for e in self.epsilons
        }

    def rng(self, job: Job) -> np.random.Generator:
        """The generator of one cell."""
        digest = hashlib.blake2b(job.question_id.encode(), digest_size=8).digest()
        eps = round((job.epsilon or 0.0) * 1000)
        return np.random.default_rng(
            [self.seed, int.from_bytes(digest, "little"), SCENARIOS.index(job.scenario), eps]
        )

    # -- checkpoint keys -----------------------------------------------------------------

    def _model(self, role: Role) -> dict[str, Any]:
        if role == "local" and self.local_generator is not None:
            return {"generator": _describe(self.local_generator)}
        s = self.settings(role)
        found: dict[str, Any] = {
            "provider": s.provider,
            "model": s.model,
            "base_url": s.base_url,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        if s.provider == "simulated":
            found["simulator"] = {
                "seed": self.simulator.seed,
                "skill": self.simulator.skill,
                "follow": self.simulator.follow,
            }
        return found

    def cell_settings(self, scenario: str) -> dict[str, Any]:
        """Every setting that decides the cells of ``scenario`` (``"paraphrase"``: the
        PhraseDP candidates): models, and for the private ones the seed, embedder, DP
        variant, mechanism options and corpus."""
        both: tuple[Role, ...] = ("local", "remote")
        alone: dict[str, tuple[Role, ...]] = {
            "1": ("local",),
            "4": ("remote",),
            "paraphrase": ("local",),
        }
        roles = alone.get(scenario, both)
        found: dict[str, Any] = {"models": {role: self._model(role) for role in roles}}
        if scenario in ("paraphrase", "3.0"):
            found["paraphrases_per_band"] = self.paraphrases_per_band
        kind = MECHANISMS.get(scenario)
        if kind is not None:
            found.update(seed=self.seed, variant=self.variant, options=self.options.of(kind))
            describe = getattr(self.embedder, "fingerprint", None)
            found["embedder"] = (
                describe() if callable(describe) else type(self.embedder).__qualname__
            )
            if kind in ("santext+", "custext+"):
                found["corpus"] = digest_counts(self.corpus)
        return found

    def key(self, scenario: str) -> str:
        """A digest of ``cell_settings(scenario)``: the last part of its cells' keys."""
        with self._key_lock:
            found = self._keys.get(scenario)
            if found is None:
                text = dumps(self.cell_settings(scenario))
                found = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
                self._keys[scenario] = found
            return found
