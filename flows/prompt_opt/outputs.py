"""What an optimisation leaves behind: the result, its files, the usage ledger and a summary.

``write_optimisation`` (run by the flow's last node) writes ``best_prompt.txt``,
``candidates.jsonl``, ``transcripts/`` (one markdown file per conversation), ``progress.json``
and ``progress.png`` (matplotlib, the ``report`` extra; skipped with a note without it).
``write_summary`` (after the run, when its figures are known) writes ``usage.json`` and
``summary.md``: the stop reason, the best prompt's scores, the calls and tokens per role and
the concurrency the LLM limiters really reached.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

import flowkit as fk
from flowkit.files import ensure_dir, write_bytes, write_text
from flowkit.limits import LimiterStats
from flows.prompt_opt.pareto import mean_score
from flows.prompt_opt.prompts import transcript
from flows.prompt_opt.state import NODE_NAMES, ROLES, OptState, Phase, RoundProgress
from nodes.files import safe_filename, safe_path

Prices = Mapping[str, tuple[float, float]]
"""Dollars per million prompt and completion tokens, by role."""


class CandidateRecord(BaseModel):
    """One line of candidates.jsonl."""

    id: str
    text: str
    parents: list[str]
    generation: int
    kind: str
    scores: dict[str, float | None]
    mean: float | None
    accepted: bool
    why: str
    errors: dict[str, str]


class UsageRow(BaseModel):
    """One role in the ledger: the calls this process made, their tokens, retries and cost."""

    role: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    retries: int
    latency_s: float
    cost: float | None


class PromptOptResult(BaseModel):
    """What an optimisation found and what it cost."""

    run_id: str
    best_id: str | None
    best_prompt: str
    best_score: float
    seed_score: float
    best_scores: dict[str, float | None]
    stop_reason: str
    rounds: int
    progress: list[RoundProgress]
    candidates: list[CandidateRecord]
    calls: dict[str, int]
    usage: list[UsageRow]
    limiters: list[LimiterStats]
    wall_time: float
    phases: list[dict[str, int | str]]
    notes: list[str]


def candidate_records(state: OptState) -> list[CandidateRecord]:
    records = []
    for cand in state.candidates.values():
        scores = state.scores(cand.id)
        errors = {
            conv.dummy: conv.error
            for keys in cand.conversations.values()
            for conv in (state.conversations[k] for k in keys)
            if conv.error is not None
        }
        records.append(
            CandidateRecord(
                id=cand.id,
                text=cand.text,
                parents=list(cand.parents),
                generation=cand.generation,
                kind=cand.kind,
                scores=scores,
                mean=mean_score(scores),
                accepted=bool(cand.accepted),
                why=cand.why or "evaluation did not finish",
                errors=errors,
            )
        )
    return records


def build_result(
    state: OptState,
    info: fk.RunInfo,
    models: Mapping[str, str] | None = None,
    prices: Prices | None = None,
) -> PromptOptResult:
    """The result of a finished run: ``state`` from its shared store, ``info`` its RunInfo."""
    best = state.best()
    seeds = [
        mean_score(state.scores(c.id)) or 0.0 for c in state.candidates.values() if c.kind == "seed"
    ]
    best_scores = state.scores(best.id) if best else {}
    return PromptOptResult(
        run_id=info.run_id,
        best_id=best.id if best else None,
        best_prompt=best.text if best else "",
        best_score=mean_score(best_scores) or 0.0,
        seed_score=max(seeds, default=0.0),
        best_scores=best_scores,
        stop_reason=state.stop_reason,
        rounds=state.round,
        progress=state.progress,
        candidates=candidate_records(state),
        calls={role: state.calls[role] for role in ROLES},
        usage=usage_rows(info, models or {}, prices or {}),
        limiters=list(info.limiters.values()),
        wall_time=info.wall_time,
        phases=[_phase(p) for p in state.phases],
        notes=state.notes,
    )


def usage_rows(info: fk.RunInfo, models: Mapping[str, str], prices: Prices) -> list[UsageRow]:
    """The ledger: each role's calls, tokens and retries in this run, priced when a price
    table names the role. Calls restored from the store on resume cost nothing here."""
    rows = []
    for role in ROLES:
        stats = info.nodes.get(NODE_NAMES[role])
        usage = stats.usage if stats is not None else {}
        prompt, completion = (
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )
        price = prices.get(role)
        rows.append(
            UsageRow(
                role=role,
                model=models.get(role, ""),
                calls=int(usage.get("calls", 0)),
                prompt_tokens=prompt,
                completion_tokens=completion,
                retries=int(usage.get("llm_retries", 0)),
                latency_s=usage.get("latency_s", 0.0),
                cost=None if price is None else (prompt * price[0] + completion * price[1]) / 1e6,
            )
        )
    return rows


def usage_table(rows: list[UsageRow]) -> str:
    """The ledger as an aligned text table, with a total row."""
    head = ("role", "model", "calls", "prompt tok", "compl tok", "retries", "cost $")
    lines = ["{:<10} {:<16} {:>6} {:>11} {:>10} {:>7} {:>8}".format(*head)]
    total = [0, 0, 0, 0]
    priced = [r.cost for r in rows if r.cost is not None]
    for r in rows:
        cost = "-" if r.cost is None else f"{r.cost:.4f}"
        lines.append(
            f"{r.role:<10} {r.model[:16]:<16} {r.calls:>6} {r.prompt_tokens:>11,} "
            f"{r.completion_tokens:>10,} {r.retries:>7} {cost:>8}"
        )
        total = [
            a + b
            for a, b in zip(
                total, (r.calls, r.prompt_tokens, r.completion_tokens, r.retries), strict=True
            )
        ]
    cost = f"{sum(priced):.4f}" if priced else "-"
    calls, prompt, completion, retries = total
    lines.append(
        f"{'total':<10} {'':<16} {calls:>6} {prompt:>11,} {completion:>10,} {retries:>7} {cost:>8}"
    )
    return "\n".join(lines)


def concurrency_lines(result: PromptOptResult) -> list[str]:
    """What the LLM limiters really reached: peak and mean calls in flight."""
    return [
        f"limiter {u.name}: peak {u.peak_in_flight}"
        + (f"/{u.max_concurrency}" if u.max_concurrency else "")
        + f" calls in flight, mean {u.mean_in_flight:.2f} while active, {u.calls} calls, "
        f"waited {u.wait_s:.2f} s in all"
        for u in result.limiters
    ]


def write_optimisation(state: OptState, directory: Path) -> list[Path]:
    """Write the candidates, transcripts, best prompt and progress under ``directory``;
    return the paths written (progress.png only when matplotlib is installed)."""
    ensure_dir(directory.resolve())  # the folder given is trusted; links planted in it are not
    written = []
    best = state.best()
    written.append(_write(directory / "best_prompt.txt", best.text if best else ""))
    lines = [r.model_dump_json() for r in candidate_records(state)]
    written.append(_write(directory / "candidates.jsonl", "".join(f"{line}\n" for line in lines)))
    folder = ensure_dir(directory / "transcripts")  # a symlinked transcripts/ is refused
    for conv in state.conversations.values():
        if not conv.done:
            continue
        name = safe_filename(f"{conv.candidate}_{conv.dummy}_r{conv.repeat + 1}.md")
        head = f"# {conv.candidate} with {conv.dummy} (repeat {conv.repeat + 1})\n\n"
        outcome = (
            f"Error: {conv.error}"
            if conv.error
            else f"Score: {conv.score}\n\nFeedback: {conv.feedback}"
        )
        written.append(
            _write(safe_path(folder, name), head + transcript(conv.messages) + f"\n\n{outcome}\n")
        )
    progress = [p.model_dump() for p in state.progress]
    written.append(_write(directory / "progress.json", json.dumps(progress, indent=2) + "\n"))
    png = render_progress(state.progress, directory / "progress.png")
    return [*written, png] if png is not None else written


def render_progress(progress: list[RoundProgress], path: Path) -> Path | None:
    """Best and mean score per round, and the Pareto front's size; None without matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, any thread
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    rounds = [p.round for p in progress]
    fig = Figure(figsize=(7, 4))
    left = fig.subplots()
    left.plot(rounds, [p.best for p in progress], marker="o", label="best score")
    left.plot(rounds, [p.mean for p in progress], marker=".", label="mean score of the pool")
    left.set(xlabel="round (1 = seed prompts)", ylabel="score", ylim=(0, 1.05))
    right = left.twinx()
    right.step(
        rounds,
        [p.front for p in progress],
        where="mid",
        color="grey",
        alpha=0.6,
        label="Pareto front size",
    )
    right.set_ylabel("candidates on the front")
    for axis in (left.xaxis, right.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylim(0, max([p.front for p in progress], default=1) + 1)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles=handles, loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    return write_bytes(path, png.getvalue())


def write_summary(result: PromptOptResult, directory: Path) -> list[Path]:
    """Write ``usage.json`` and ``summary.md`` (the run report in words) under ``directory``."""
    ensure_dir(directory.resolve())
    usage = [r.model_dump() for r in result.usage]
    scores = "\n".join(
        f"| {d} | {'error' if s is None else f'{s:.2f}'} |" for d, s in result.best_scores.items()
    )
    text = "\n".join(
        [
            f"# Prompt optimisation, run {result.run_id}",
            "",
            f"Best: {result.best_id} with mean score {result.best_score:.3f} "
            f"(the seed prompt scored {result.seed_score:.3f}), after {result.rounds} rounds; "
            f"stopped because: {result.stop_reason}.",
            f"{len(result.candidates)} candidates, "
            f"{sum(c.accepted for c in result.candidates)} accepted; "
            f"{sum(result.calls.values())} LLM calls counted against the budget; "
            f"wall time {result.wall_time:.2f} s.",
            "",
            "| dummy | best prompt's score |",
            "| --- | --- |",
            scores,
            "",
            "## Calls and tokens per role (this process)",
            "",
            "```",
            usage_table(result.usage),
            "```",
            "",
            "## Concurrency reached",
            "",
            *[f"- {line}" for line in concurrency_lines(result)],
            *([""] + [f"- note: {n}" for n in result.notes] if result.notes else []),
            "",
        ]
    )
    return [
        _write(directory / "usage.json", json.dumps(usage, indent=2) + "\n"),
        _write(directory / "summary.md", text),
    ]


def _phase(phase: Phase) -> dict[str, int | str]:
    return {"kind": phase.kind, "calls": phase.calls, "chain": phase.chain}


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` in one step, secrets redacted; a symbolic link there is
    refused (``flowkit.files``)."""
    return write_text(path, text)
