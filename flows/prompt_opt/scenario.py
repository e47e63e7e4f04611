"""Dummies (simulated users) and the seed prompt: the models, the loader, the bundled clinic set.

A dummies file is a JSON list of objects::

    {"id": "anxious-parent", "persona": "...", "goal": "...", "opening": "...",
     "follow_ups": ["..."],
     "satisfied_when": [{"need": "...", "instruction": "...", "cue": "..."}]}

``need`` says in words what would satisfy the user; the judge reads it. ``instruction`` and
``cue`` drive the offline simulation only (see ``flows.prompt_opt.simulated``): the judge's
feedback for an unmet need says the assistant should follow ``instruction``, and a reply
meets the need when it contains ``cue``. Real runs ignore both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowkit.errors import FlowkitError

BUNDLED_DUMMIES = "dummies.json"

SEED_PROMPT = """\
You are the front-desk assistant of Riverside Family Clinic. You help patients book, move \
and cancel appointments and tell them where to get the right care.
- Offer the next available appointment slot.
- Use plain language and short sentences.
"""
"""The bundled seed prompt: a plausible first draft that meets few of the dummies' needs."""


class PromptOptError(FlowkitError):
    """Base class of the errors the prompt-optimisation flow raises."""


class PromptOptInputError(PromptOptError, ValueError):
    """A dummies file, seed prompt or option cannot be used; the message names the fix."""


class TooManyFailuresError(PromptOptError):
    """Too many conversations failed in a row: the endpoint is likely down or refusing."""


class Requirement(BaseModel):
    """One thing that would satisfy a dummy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    need: str = Field(min_length=1)
    instruction: str | None = None
    cue: str | None = None


class Dummy(BaseModel):
    """A simulated user: who they are, what they want, what would satisfy them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    persona: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    opening: str = Field(min_length=1)
    follow_ups: tuple[str, ...] = ()
    satisfied_when: tuple[Requirement, ...] = Field(min_length=1)

    def check_simulable(self) -> None:
        """Refuse a dummy the offline simulation cannot judge (a need without cue or
        instruction)."""
        for n, req in enumerate(self.satisfied_when):
            if not (req.cue and req.instruction):
                raise PromptOptInputError(
                    f"dummy {self.id!r}: satisfied_when[{n}] ({req.need!r}) has no "
                    "'instruction' and 'cue'; the simulated provider needs both (or run with "
                    "--provider openai)"
                )


def bundled_dummies_path() -> Path:
    """Where the bundled clinic dummies are installed."""
    return Path(str(resources.files(__package__ or "flows.prompt_opt") / BUNDLED_DUMMIES))


def load_dummies(path: str | Path | None = None) -> list[Dummy]:
    """The dummies in ``path`` (a JSON list), or the bundled clinic set; ids must be unique."""
    source = Path(path) if path is not None else bundled_dummies_path()
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptOptInputError(f"cannot read dummies file {source}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PromptOptInputError(f"dummies file {source} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise PromptOptInputError(
            f"dummies file {source} must hold a non-empty JSON list of dummies"
        )
    dummies = []
    for n, entry in enumerate(data):
        try:
            dummies.append(Dummy.model_validate(entry))
        except ValidationError as exc:
            raise PromptOptInputError(f"dummies file {source}, entry {n}: {exc}") from None
    check_unique(dummies)
    return dummies


def check_unique(dummies: Sequence[Dummy]) -> None:
    """Refuse two dummies with one id (ignoring case: ids name transcript files)."""
    seen: dict[str, str] = {}
    for dummy in dummies:
        folded = dummy.id.casefold()
        if folded in seen:
            raise PromptOptInputError(
                f"dummies {seen[folded]!r} and {dummy.id!r} share an id; give each its own"
            )
        seen[folded] = dummy.id


def load_seed_prompts(path: str | Path | None = None) -> list[str]:
    """The seed prompts in ``path`` (several separated by lines of ``---``), or the bundled one."""
    if path is None:
        return [SEED_PROMPT]
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptOptInputError(f"cannot read seed prompt {source}: {exc.strerror}") from None
    prompts: list[str] = []
    block: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.strip() == "---":
            prompts.append("".join(block))
            block = []
        else:
            block.append(line)
    prompts.append("".join(block))
    prompts = [p.strip() + "\n" for p in prompts if p.strip()]
    if not prompts:
        raise PromptOptInputError(f"seed prompt file {source} is empty")
    return prompts
