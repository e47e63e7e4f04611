"""The offline rule: what each role answers under the simulated provider.

It is deterministic and makes optimisation real rather than scripted:

- the **assistant** follows its system prompt: each reply restates every instruction in the
  prompt (each line or sentence, bar the "You are ..." introduction), and nothing else;
- the **user** says the dummy's opening line, then its follow-ups, in order;
- the **judge** scores the share of the dummy's hidden requirements that the assistant's
  replies meet (a requirement is met when a reply contains its cue) and writes feedback in
  words: each met need, and for each unmet one "The assistant should <instruction>.";
- the **reflector** sees only its request text (never the requirements): it adds every
  "The assistant should ..." sentence from the judge's feedback in that text that the prompt
  does not already hold and that no rejected rewrite tried (rewrite n of a round's siblings
  starts the list at its n-th entry, so siblings differ); with nothing to add it tries a
  generic rule, as a model with no evidence would;
- the **merger** keeps every line of the first version, then the lines of each next version
  that the text so far lacks.

So a prompt improves only by asking for what the users needed, and only through feedback.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from flows.prompt_opt.prompts import (
    FEEDBACK_LABEL,
    REJECTED_HEADING,
    Message,
    Verdict,
    enclosed,
)
from flows.prompt_opt.scenario import Dummy

GENERIC_RULES = (
    "Be warm and professional.",
    "Thank the caller for getting in touch.",
    "Keep a calm tone even when the caller is upset.",
    "Ask one question at a time.",
    "End each conversation by asking whether there is anything else.",
)
"""What the reflector adds when the feedback asks for nothing specific."""

_VARIANT = re.compile(r"This is rewrite (\d+) of \d+")
_SHOULD = re.compile(r"The assistant should ([^.]+)\.")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def instructions(prompt: str) -> list[str]:
    """The instructions in a system prompt: its lines and sentences, bar "You are ..."."""
    found = []
    for line in prompt.splitlines():
        for sentence in _SENTENCE.split(_BULLET.sub("", line).strip()):
            if sentence and not sentence.lower().startswith("you are"):
                found.append(sentence)
    return found


def assistant_reply(system_prompt: str, turn: int) -> str:
    """The simulated assistant's reply at ``turn``: its instructions, restated."""
    rules = " ".join(_sentence(rule) for rule in instructions(system_prompt))
    opener = "Happy to help with that." if turn == 0 else "Of course."
    return f"{opener} {rules}".strip()


def user_message(dummy: Dummy, turn: int) -> str:
    """The simulated user's message at ``turn``: the opening line, then the follow-ups."""
    if turn == 0:
        return dummy.opening
    if turn - 1 < len(dummy.follow_ups):
        return dummy.follow_ups[turn - 1]
    return "Is there anything else I should know?"


def verdict(dummy: Dummy, messages: Sequence[Message]) -> Verdict:
    """The simulated judge: the share of requirements met, and feedback naming the rest."""
    said = " ".join(m["content"] for m in messages if m["role"] == "assistant").lower()
    met, notes = 0, []
    for req in dummy.satisfied_when:
        assert req.cue and req.instruction, "check_simulable() refuses such dummies"
        if req.cue.lower() in said:
            met += 1
            notes.append(f"Met: {req.need}.")
        else:
            notes.append(f"Not met: {req.need}. The assistant should {req.instruction}.")
    return Verdict(score=met / len(dummy.satisfied_when), feedback=" ".join(notes))


def reflect(request: str) -> str:
    """The simulated reflector's reply to a reflection request (``prompts.reflect_request``)."""
    blocks = enclosed(request)
    current = blocks[0] if blocks else ""
    have = current.lower()
    tried = _rejected_lines(request)
    wanted: list[str] = []
    for line in request.splitlines():
        if line.startswith(FEEDBACK_LABEL):
            for wish in _SHOULD.findall(line):
                rule = _sentence(wish[0].upper() + wish[1:])
                if rule.lower() not in have and rule.lower() not in tried and rule not in wanted:
                    wanted.append(rule)
    shift = _VARIANT.search(request)
    if shift and wanted:
        n = (int(shift.group(1)) - 1) % len(wanted)
        wanted = wanted[n:] + wanted[:n]
    if not wanted:
        start = int(hashlib.sha256(request.encode()).hexdigest(), 16) % len(GENERIC_RULES)
        for n in range(len(GENERIC_RULES)):
            rule = GENERIC_RULES[(start + n) % len(GENERIC_RULES)]
            if rule.lower() not in have and rule.lower() not in tried:
                wanted.append(rule)
                break
    lines = [current, *(f"- {rule}" for rule in wanted)]
    return f"<<<\n{chr(10).join(lines)}\n>>>"


def merge(request: str) -> str:
    """The simulated merger's reply: the first version's lines, then each next version's
    lines that the text so far lacks."""
    versions = enclosed(request)
    lines = versions[0].splitlines()
    have = {line.strip().lower() for line in lines}
    for version in versions[1:]:
        for line in version.splitlines():
            if line.strip().lower() not in have:
                lines.append(line)
                have.add(line.strip().lower())
    return f"<<<\n{chr(10).join(lines)}\n>>>"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _rejected_lines(request: str) -> set[str]:
    """Instructions that rejected rewrites added (``- added: <rule>`` lines)."""
    _, heading, rest = request.partition(REJECTED_HEADING)
    if not heading:
        return set()
    found = set()
    for line in rest.splitlines():
        if line.startswith("## "):
            break
        for rule in re.findall(r"added: (.+?)(?: \||$)", line):
            found.add(_sentence(rule).lower())
    return found
