"""What each role is asked: the user simulator, the judge, the reflector and the merger.

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
You improve the system prompt of an assistant from evidence: conversations it had with \
users, their scores and a judge's feedback."""

REFLECT_REQUEST = """\
## Current system prompt
{open}
{prompt}
{close}

## Conversations with this prompt
{conversations}
{rejected}
## Task
{variant}Write an improved system prompt that fixes the problems above without losing what works. \
Keep general rules general: they must help users beyond these conversations. Reply with \
the new system prompt only, between {open} and {close}."""

MERGE_REQUEST = """\
Two system prompts for the same assistant each serve some users best.

## Prompt A (mean score {score_a:.3f})
{open}
{prompt_a}
{close}

## Prompt B (mean score {score_b:.3f})
{open}
{prompt_b}
{close}

## Task
Write one system prompt that keeps everything that makes either prompt work. Reply with the \
new system prompt only, between {open} and {close}."""


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
    """One conversation shown to the reflector: what was said, its score and (maybe) why."""

    dummy: str
    messages: tuple[dict[str, str], ...]
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
) -> str:
    """The reflector's request; ``rejected`` lists earlier rewrites, one line each;
    ``variant`` (0-based) of ``variants`` asks sibling rewrites to differ."""
    blocks = []
    for n, item in enumerate(evidence, 1):
        block = f"### Conversation {n} (score {item.score:.2f})\n{transcript(item.messages)}"
        if item.feedback is not None:
            block += f"\n{FEEDBACK_LABEL} {item.feedback}"
        blocks.append(block)
    tried = ""
    if rejected:
        tried = f"\n{REJECTED_HEADING}\n" + "\n".join(f"- {line}" for line in rejected) + "\n"
    return REFLECT_REQUEST.format(
        open=OPEN,
        close=CLOSE,
        prompt=prompt.strip(),
        conversations="\n\n".join(blocks) or "(none succeeded)",
        rejected=tried,
        variant=VARIANT.format(n=variant + 1, k=variants) if variants > 1 else "",
    )


def merge_request(prompt_a: str, score_a: float, prompt_b: str, score_b: float) -> str:
    return MERGE_REQUEST.format(
        open=OPEN,
        close=CLOSE,
        prompt_a=prompt_a.strip(),
        prompt_b=prompt_b.strip(),
        score_a=score_a,
        score_b=score_b,
    )


_FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def enclosed(text: str) -> list[str]:
    """Every block of ``text`` between ``<<<`` and ``>>>``, stripped."""
    return [m.strip() for m in re.findall(rf"{OPEN}(.*?){CLOSE}", text, re.S)]


def extract_prompt(reply: str) -> str:
    """The new prompt in a reply: between ``<<<``/``>>>``, else in a code fence, else all."""
    blocks = enclosed(reply) or [m.strip() for m in _FENCED.findall(reply)]
    text = blocks[-1] if blocks else reply.strip()
    return text + "\n" if text else ""
