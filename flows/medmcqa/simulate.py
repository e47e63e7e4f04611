"""Offline stand-ins for the two models, so the experiment's shape shows without an API.

The rule, deterministic for a seed (every draw is a hash of the seed and what it is about):

- **Answering.** A model *knows* a question with probability ``skill[role]`` (local weaker
  than remote), drawn once per model and question, so scenarios share the draw. A model
  that knows answers correctly. One that does not, given a chain of thought, adopts the
  option the chain concludes with, with probability ``follow``; otherwise it guesses (one
  guess per model and question, uniform over A-D).
- **Chains of thought.** The remote author saw a text with *overlap* ``q`` with the
  original: the share of the original's distinct content words (three letters or more, not
  a stop word) that appear in it. Its conclusion names the correct option with probability
  ``skill["remote"] · q``, else an option drawn uniformly. So a CoT written for the full
  question helps, one for a heavily sanitised question barely beats a guess.
- **Paraphrases.** Each candidate keeps each word of the question with the band's keep
  rate (close 0.9, moderate 0.6, loose 0.3) and drops or genericises the others.

With the defaults (local 0.35, remote 0.85, follow 0.7) the expected accuracies are about
0.51 (scenario 1), 0.80 (2), 0.89 (4), and for 3.x between 0.51 and 0.80, rising with the
overlap the sanitiser leaves (the share of words it keeps: the privacy table's last
column), so with ε where the mechanism keeps more at a larger ε. The rule knows no
medicine: it rewards kept words, whichever they are, so the offline table shows the
experiment's mechanics and each mechanism's word survival, not real accuracy.
``responder(role)`` answers the local test server's requests with the same rule, so runs
over HTTP see the same replies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from flows.medmcqa.data import LETTERS, Question
from flows.medmcqa.privacy.base import STOP_WORDS
from flows.medmcqa.privacy.embedder import words
from flows.medmcqa.privacy.phrasedp import BANDS
from flows.medmcqa.prompts import ANSWER_SYSTEM, COT_SYSTEM, split_answer_prompt
from nodes.llm.testing.completions import last_user_text, message_text

Role = Literal["local", "remote"]
KEEP = {"close": 0.9, "moderate": 0.6, "loose": 0.3}
_INSTRUCTION = dict(BANDS)
_GENERIC = ("patient", "condition", "finding", "case", "clinical", "feature", "problem")


def _uniform(*parts: object) -> float:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def _content(text: str) -> set[str]:
    return {w for w in words(text) if len(w) >= 3 and w not in STOP_WORDS}


def overlap(seen: str, original: str) -> float:
    """Share of the original's distinct content words (3+ letters, not a stop word) that
    also appear in ``seen``."""
    target = _content(original)
    return len(target & _content(seen)) / len(target) if target else 1.0


@dataclass(frozen=True)
class SimulatedModels:
    """The deterministic rule above, for the simulated provider and the test server."""

    seed: int = 0
    skill: dict[str, float] = field(default_factory=lambda: {"local": 0.35, "remote": 0.85})
    follow: float = 0.7

    def answer(self, role: Role, question: Question, cot: str | None = None) -> str:
        """A reply ending in 'Answer: X'."""
        key = (self.seed, role, question.id)
        if _uniform(*key, "knows") < self.skill[role]:
            letter, why = question.letter, "I recognise this"
        else:
            concluded = self._concluded(question, cot) if cot else None
            if concluded is not None and _uniform(*key, "follow", cot) < self.follow:
                letter, why = LETTERS[concluded], "The reasoning given points there"
            else:
                letter, why = LETTERS[int(_uniform(*key, "guess") * 4)], "Best guess"
        return f"{why}.\nAnswer: {letter}"

    def cot(self, question: Question, seen: str) -> str:
        """A chain of thought written from ``seen``, concluding with one option's text."""
        q = overlap(seen, question.question)
        if _uniform(self.seed, "cot", question.id, seen) < self.skill["remote"] * q:
            pick = question.answer
        else:
            pick = int(_uniform(self.seed, "cot-pick", question.id, seen) * 4)
        gist = " ".join(seen.split()[:12])
        return (
            f"The case mentions: {gist} ...\nWeighing the likely causes step by step, the "
            f"features fit best with one explanation.\nConclusion: {question.options[pick]}"
        )

    def paraphrases(self, text: str, band: str, count: int) -> list[str]:
        """``count`` candidates for ``band``, each keeping words at the band's rate."""
        keep = KEEP.get(band, 0.5)
        out = []
        for n in range(count):
            kept = []
            for i, word in enumerate(text.split()):
                u = _uniform(self.seed, "para", text, band, n, i)
                if u < keep:
                    kept.append(word)
                elif u < keep + (1 - keep) / 2:
                    kept.append(_GENERIC[int(u * 1000) % len(_GENERIC)])
            out.append(" ".join(kept) or text.split()[0])
        return out

    @staticmethod
    def _concluded(question: Question, cot: str) -> int | None:
        last = cot.rsplit("Conclusion:", 1)
        if len(last) < 2:
            return None
        said = last[1].strip().lower()
        for i, option in enumerate(question.options):
            if said.startswith(option.lower()):
                return i
        return None

    def responder(self, role: Role, questions: Iterable[Question]) -> Any:
        """A ``nodes.llm.testing`` responder answering as the ``role`` model by this rule."""
        by_text = {q.question: q for q in questions}
        index = [(q, _content(q.question)) for q in by_text.values()]

        def closest(seen: str) -> Question:
            found = _content(seen)
            return max(index, key=lambda qc: len(qc[1] & found) / max(len(qc[1]), 1))[0]

        def respond(body: dict[str, Any]) -> str:
            messages = body.get("messages", [])
            system = message_text(messages[0]) if messages else ""
            user = last_user_text(messages)
            if system == ANSWER_SYSTEM:
                text, cot = split_answer_prompt(user)
                return self.answer(role, by_text.get(text) or closest(text), cot)
            if system == COT_SYSTEM:
                seen = user.removeprefix("Case: ")
                return self.cot(closest(seen), seen)
            band = next((b for b in KEEP if _INSTRUCTION[b] in system), "moderate")
            count = int(system.split(" different ways", 1)[0].rsplit(" ", 1)[-1])
            return json.dumps({"paraphrases": self.paraphrases(user, band, count)})

        return respond
