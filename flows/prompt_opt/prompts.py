"""What each role is asked: the user simulator, the judge, the reflector and the LLM merger.

The reflector and merger read prompts between ``<<<`` and ``>>>`` and answer the same way,
so a reply is easy to cut out (``extract_prompt``); the offline simulation parses the very
same request text (``flows.prompt_opt.simulated``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

from flows.prompt_opt.scenario import Dummy

OPEN, CLOSE = "<<<", ">>>"
DONE = "[DONE]"
"""A simulated user ends the conversation early by ending a message with this."""
FEEDBACK_LABEL = "Judge's feedback:"
REJECTED_HEADING = "## Rewrites already tried and rejected (do not propose them again)"

Message = Mapping[str, str]


class Verdict(BaseModel):
    """The judge's structured answer for one conversation."""

    score: float = Field(ge=0, le=1, description="share of the user's needs that were met")
    feedback: str = Field(description="what went well and, for each unmet need, what to do")


USER_SYSTEM = """\
You are role-playing a person who contacts an assistant. Stay in character and write only \
your next message, in one to three sentences, as this person would.
Who you are: {persona}
What you want: {goal}
When you have what you want, or it clearly cannot be had, end your message with {done}."""

USER_START = "(The conversation begins. Write your first message; it may be close to: {opening})"

JUDGE_SYSTEM = """\
You judge how well an assistant served a user in a conversation. Be strict and concrete."""

JUDGE_REQUEST = """\
The user: {persona}
Their goal: {goal}
They are satisfied when:
{needs}

The conversation:
{transcript}

Score the conversation from 0 to 1: the share of the needs above that the assistant met. \
In the feedback, say which needs were met, and for each unmet need write one sentence \
starting "The assistant should" that says what it must do next time."""

REFLECT_SYSTEM = """\
You improve the system prompt of an assistant from evidence: what it did, the scores it got \
and a judge's feedback."""

REFLECT_REQUEST = """\
## Current {what}
{open}
{prompt}
{close}
{context}
## {unit}s with this prompt
{examples}
{rejected}
## Task
{variant}Write an improved {what} that fixes the problems above without losing what works. \
Keep general rules general: they must help users beyond these examples. Reply with \
the new text only, between {open} and {close}."""

MERGE_REQUEST = """\
{count} versions of a system prompt for the same assistant each serve some users best.

{versions}

## Task
Write one system prompt that keeps everything that makes each version work. Reply with the \
new system prompt only, between {open} and {close}."""

MERGE_VERSION = """\
## Version {name} (mean score {score:.3f})
{open}
{prompt}
{close}"""


def transcript(messages: Iterable[Message]) -> str:
    """The conversation as ``User: ...`` / ``Assistant: ...`` lines."""
    names = {"user": "User", "assistant": "Assistant"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def user_system(dummy: Dummy) -> str:
    return USER_SYSTEM.format(persona=dummy.persona, goal=dummy.goal, done=DONE)


def user_view(dummy: Dummy, messages: Sequence[Message]) -> list[dict[str, str]]:
    """The conversation as the user simulator sees it: the roles swapped."""
    if not messages:
        return [{"role": "user", "content": USER_START.format(opening=dummy.opening)}]
    swap = {"user": "assistant", "assistant": "user"}
    return [{"role": swap[m["role"]], "content": m["content"]} for m in messages]


def judge_request(dummy: Dummy, messages: Sequence[Message]) -> str:
    needs = "\n".join(f"- {req.need}" for req in dummy.satisfied_when)
    return JUDGE_REQUEST.format(
        persona=dummy.persona, goal=dummy.goal, needs=needs, transcript=transcript(messages)
    )


class Evidence(BaseModel):
    """One evaluation shown to the reflector: what happened, its score and (maybe) why."""

    row: str
    trace: str
    score: float
    feedback: str | None


VARIANT = (
    "This is rewrite {n} of {k} of this prompt in this round: make it differ from the others. "
)


def reflect_request(
    prompt: str,
    evidence: Sequence[Evidence],
    rejected: Sequence[str],
    variant: int = 0,
    variants: int = 1,
    *,
    component: str = "system_prompt",
    others: Mapping[str, str] | None = None,
    unit: str = "conversation",
) -> str:
    """The reflector's request to rewrite one component (``prompt`` is its text; ``others``
    the candidate's other components, shown unchanged); ``rejected`` lists earlier rewrites,
    one line each; ``variant`` (0-based) of ``variants`` asks sibling rewrites to differ."""
    blocks = []
    for n, item in enumerate(evidence, 1):
        block = f"### {unit.capitalize()} {n} (score {item.score:.2f})\n{item.trace}"
        if item.feedback is not None:
            block += f"\n{FEEDBACK_LABEL} {item.feedback}"
        blocks.append(block)
    tried = ""
    if rejected:
        tried = f"\n{REJECTED_HEADING}\n" + "\n".join(f"- {line}" for line in rejected) + "\n"
    context = ""
    if others:
        quoted = [
            f"### {name}\n" + "\n".join(f"| {line}" for line in text.strip().splitlines())
            for name, text in others.items()
        ]
        context = "\n## The prompt's other parts (unchanged)\n" + "\n\n".join(quoted) + "\n"
    what = "system prompt" if component == "system_prompt" and not others else f"`{component}`"
    return REFLECT_REQUEST.format(
        what=what,
        open=OPEN,
        close=CLOSE,
        prompt=prompt.strip(),
        context=context,
        unit=unit.capitalize(),
        examples="\n\n".join(blocks) or "(none succeeded)",
        rejected=tried,
        variant=VARIANT.format(n=variant + 1, k=variants) if variants > 1 else "",
    )


def rejected_line(old: str, new: str, why: str) -> str:
    """One line for the reflector about a rejected rewrite: what it added, and why it failed
    (``- added: <line> | ... | why: <reason>``; the simulated reflector reads it back)."""
    have = {line.strip() for line in old.splitlines()}
    added = [line.strip().lstrip("-* ").strip() for line in new.splitlines()]
    changes = [f"added: {line}" for line in added if line and f"- {line}" not in have]
    return " | ".join([*changes, f"why: {why}"])


def merge_request(versions: Sequence[tuple[str, float]]) -> str:
    """The LLM merger's request: each version's text and validation mean."""
    names = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    blocks = [
        MERGE_VERSION.format(
            name=names[n % 26], score=score, open=OPEN, close=CLOSE, prompt=text.strip()
        )
        for n, (text, score) in enumerate(versions)
    ]
    count = {2: "Two", 3: "Three", 4: "Four"}.get(len(versions), str(len(versions)))
    return MERGE_REQUEST.format(count=count, versions="\n\n".join(blocks), open=OPEN, close=CLOSE)


_FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def enclosed(text: str) -> list[str]:
    """Every block of ``text`` between ``<<<`` and ``>>>``, stripped."""
    return [m.strip() for m in re.findall(rf"{OPEN}(.*?){CLOSE}", text, re.S)]


def extract_prompt(reply: str) -> str:
    """The new prompt in a reply: between ``<<<``/``>>>``, else in a code fence, else all."""
    blocks = enclosed(reply) or [m.strip() for m in _FENCED.findall(reply)]
    text = blocks[-1] if blocks else reply.strip()
    return text + "\n" if text else ""
