"""What the experiment asks the models, and how their replies are read."""

from __future__ import annotations

import re

from pydantic import BaseModel, ValidationError

from flows.medmcqa.data import Question

ANSWER_SYSTEM = (
    "You are a medical expert answering a multiple-choice question. Think briefly, then end "
    "your reply with one line 'Answer: X', X being A, B, C or D."
)
COT_SYSTEM = (
    "You are a medical expert. Reason step by step about the case the user describes and "
    "explain what it most likely points to. End with one line 'Conclusion: ...'."
)
PARAPHRASE_SYSTEM = (
    "Rewrite the user's medical question {count} different ways; {instruction}. Reply with "
    'JSON only: {{"paraphrases": ["...", "..."]}}.'
)
COT_INTRO = "Reasoning from an assistant who saw a disguised version of the case"
_ANSWER = re.compile(r"answer\s*(?:is|:)?\s*\(?([ABCD])\b", re.IGNORECASE)
_LONE_LETTER = re.compile(r"\b([ABCD])\b")


class Paraphrases(BaseModel):
    """The local model's paraphrase candidates for one similarity band."""

    paraphrases: list[str]


def paraphrases_in(reply: str) -> list[str]:
    """Paraphrases from a reply: the JSON asked for, else one per non-empty line."""
    try:
        return Paraphrases.model_validate_json(reply).paraphrases
    except ValidationError:
        return [line.strip(" -*\t") for line in reply.splitlines() if line.strip(" -*\t")]


def answer_prompt(question: Question, cot: str | None = None) -> str:
    """The question and its options, with a chain of thought to consider when given."""
    text = f"Question: {question.question}\nOptions:\n{question.options_text()}"
    if cot is not None:
        text += f"\n\n{COT_INTRO} (it may be mistaken):\n{cot}"
    return text


def cot_prompt(text: str) -> str:
    """The (possibly sanitised) question for the remote model's chain of thought."""
    return f"Case: {text}"


def parse_answer(reply: str) -> str | None:
    """The option letter a reply settles on: 'Answer: X', else its last lone A-D, else None."""
    found = _ANSWER.findall(reply)
    if found:
        return str(found[-1]).upper()
    lone = _LONE_LETTER.findall(reply)
    return lone[-1] if lone else None


def split_answer_prompt(prompt: str) -> tuple[str, str | None]:
    """Inverse of ``answer_prompt``: the question text and the chain of thought (or None)."""
    head, _, rest = prompt.partition("\nOptions:\n")
    question = head.removeprefix("Question: ")
    _, found, cot = rest.partition(f"\n\n{COT_INTRO} (it may be mistaken):\n")
    return question, cot if found else None
