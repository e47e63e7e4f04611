"""What an optimisation leaves behind: the result, its files, the usage ledger and a summary.

``write_optimisation`` (run by the flow's last node) writes ``best_prompt.txt`` (the best
candidate as one text), ``best_candidate.json`` (its components), ``candidates.jsonl``,
``evaluations.jsonl`` (every run of a candidate on a row: why it ran, when, its score or
error), ``transcripts/`` (one markdown file per evaluation), ``progress.json`` and ``progress.png``
(matplotlib, the ``report`` extra; skipped with a note without it). ``write_summary`` (after
the run, when its figures are known) writes ``usage.json`` and ``summary.md``: the splits,
the stop reason, the best candidate's validation and test scores, the failures, the calls,
tokens and dollars billed per role, and the concurrency the LLM limiters really reached.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

import flowkit as fk
from flowkit.files import ensure_dir, write_bytes, write_text
from flowkit.limits import LimiterStats
from flows.prompt_opt.pareto import mean_score
from flows.prompt_opt.search import OptState, Prices, RoundProgress
from nodes.files import safe_filename, safe_path


class CandidateRecord(BaseModel):
    """One line of candidates.jsonl."""

    id: str
    components: dict[str, str]
    parents: list[str]
    round: int
    kind: str
    component: str | None
    val_scores: dict[str, float | None]
    val_mean: float | None
    val_runs: int
    gate_before: float | None
    gate_after: float | None
    test_scores: dict[str, float | None]
    test_mean: float | None
    failures: int
    accepted: bool
    why: str
    errors: dict[str, str]


class EvaluationRecord(BaseModel):
    """One line of evaluations.jsonl: one run of a candidate on a row."""

    key: str
    candidate: str
    row: str
    purpose: str
    round: str
    score: float | None
    value: float
    error: str | None
    calls: int


class UsageRow(BaseModel):
    """One role in the ledger: what its calls billed over the run, and their cost."""

    role: str
    model: str
    calls: int
    attempts: int
    retries: int
    failed: int
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


class SplitInfo(BaseModel):
    how: str
    train: list[str]
    val: list[str]
    test: list[str]
    warnings: list[str]


class PromptOptResult(BaseModel):
    """What an optimisation found and what it cost."""

    run_id: str
    splits: SplitInfo
    best_id: str | None
    best_components: dict[str, str]
    best_prompt: str
    best_score: float
    best_scores: dict[str, float | None]
    seed_score: float
    test_score: float | None
    seed_test_score: float | None
    rescored: list[str]
    proposals_per_round: int
    stop_reason: str
    rounds: int
    progress: list[RoundProgress]
    candidates: list[CandidateRecord]
    calls: dict[str, int]
    billed: int
    cost: float
    usage: list[UsageRow]
    limiters: list[LimiterStats]
    wall_time: float
    notes: list[str]


def candidate_records(state: OptState) -> list[CandidateRecord]:
    pool = state.pool
    records = []
    for cand in pool.candidates.values():
        val = pool.val_scores(cand.id, state.val)
        test = pool.test_scores(cand.id, state.test) if cand.id in state.tested else {}
        errors = {
            ev.row: ev.error
            for keys in cand.runs.values()
            for ev in (pool.evaluations[k] for k in keys)
            if ev.error is not None
        }
        records.append(
            CandidateRecord(
                id=cand.id,
                components=cand.components,
                parents=list(cand.parents),
                round=cand.round,
                kind=cand.kind,
                component=cand.component,
                val_scores=val if any(v is not None for v in val.values()) else {},
                val_mean=mean_score(val),
                val_runs=sum(
                    len(pool.done_runs(cand.id, r, ("val", "rescore"))) for r in state.val
                ),
                gate_before=cand.gate[0],
                gate_after=cand.gate[1],
                test_scores=test,
                test_mean=mean_score(test) if test else None,
                failures=pool.failures(cand.id),
                accepted=cand.accepted,
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
    pool = state.pool
    prices = prices if prices is not None else state.prices
    best = pool.best(state.val)
    seeds = [c for c in pool.candidates.values() if c.kind == "seed" and c.accepted]
    seed_scores = [mean_score(pool.val_scores(c.id, state.val)) or 0.0 for c in seeds]
    best_scores = pool.val_scores(best.id, state.val) if best else {}
    seed_tests = [
        t
        for c in seeds
        if c.id != (best.id if best else None) and (t := state.test_score(c.id)) is not None
    ]
    splits = state.splits
    return PromptOptResult(
        run_id=info.run_id,
        splits=SplitInfo(
            how=splits.how,
            train=list(state.train),
            val=list(state.val),
            test=list(state.test),
            warnings=list(splits.warnings),
        ),
        best_id=best.id if best else None,
        best_components=best.components if best else {},
        best_prompt=state.task.render(best.components) if best else "",
        best_score=mean_score(best_scores) or 0.0,
        best_scores=best_scores,
        seed_score=max(seed_scores, default=0.0),
        test_score=state.test_score(best.id) if best else None,
        seed_test_score=(
            max(seed_tests)
            if seed_tests
            else (state.test_score(best.id) if best and best.kind == "seed" else None)
        ),
        rescored=state.rescored,
        proposals_per_round=state.n_proposals,
        stop_reason=state.stop_reason,
        rounds=state.round,
        progress=state.progress,
        candidates=candidate_records(state),
        calls=dict(pool.answered),
        billed=pool.attempts(),
        cost=pool.cost(prices),
        usage=usage_rows(state, models or {}, prices),
        limiters=list(info.limiters.values()),
        wall_time=info.wall_time,
        notes=state.notes,
    )


def usage_rows(state: OptState, models: Mapping[str, str], prices: Prices) -> list[UsageRow]:
    """The ledger: what each role's calls billed over the whole run (a resumed run counts the
    calls restored from the store too), priced when the price table names the role."""
    rows = []
    order = Counter({"assistant": 0, "user": 1, "judge": 2, "reflect": 3})
    for name in sorted(state.pool.bills, key=lambda n: (order.get(n, 9), n)):
        bill = state.pool.bills[name]
        price = prices.get(name)
        rows.append(
            UsageRow(
                role=name,
                model=models.get(name, ""),
                calls=bill.answered,
                attempts=bill.attempts,
                retries=bill.retried,
                failed=bill.failed,
                reasks=bill.reasks,
                prompt_tokens=bill.prompt_tokens,
                completion_tokens=bill.completion_tokens,
                cost=None
                if price is None
                else (bill.prompt_tokens * price[0] + bill.completion_tokens * price[1]) / 1e6,
            )
        )
    return rows


def usage_table(rows: list[UsageRow]) -> str:
    """The ledger as an aligned text table, with a total row."""
    head = (
        "role",
        "model",
        "calls",
        "billed",
        "retries",
        "failed",
        "prompt tok",
        "compl tok",
        "cost $",
    )
    fmt = "{:<10} {:<16} {:>6} {:>6} {:>7} {:>6} {:>11} {:>10} {:>8}"
    lines = [fmt.format(*head)]
    total = [0] * 6
    priced = [r.cost for r in rows if r.cost is not None]
    for r in rows:
        values = (r.calls, r.attempts, r.retries, r.failed, r.prompt_tokens, r.completion_tokens)
        total = [a + b for a, b in zip(total, values, strict=True)]
        cost = "-" if r.cost is None else f"{r.cost:.4f}"
        lines.append(fmt.format(r.role, r.model[:16], *_counts(values), cost))
    cost = f"{sum(priced):.4f}" if priced else "-"
    lines.append(fmt.format("total", "", *_counts(tuple(total)), cost))
    return "\n".join(lines)


def _counts(values: tuple[int, ...]) -> list[str]:
    return [f"{v:,}" for v in values]


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
    """Write the candidates, transcripts, best candidate and progress under ``directory``;
    return the paths written (progress.png only when matplotlib is installed)."""
    ensure_dir(directory.resolve())  # the folder given is trusted; links planted in it are not
    pool = state.pool
    written = []
    best = pool.best(state.val)
    written.append(
        _write(directory / "best_prompt.txt", state.task.render(best.components) if best else "")
    )
    written.append(
        _write(
            directory / "best_candidate.json",
            json.dumps(best.components if best else {}, indent=2, ensure_ascii=False) + "\n",
        )
    )
    lines = [r.model_dump_json() for r in candidate_records(state)]
    written.append(_write(directory / "candidates.jsonl", "".join(f"{line}\n" for line in lines)))
    runs = [
        EvaluationRecord(
            key=ev.key,
            candidate=ev.candidate,
            row=ev.row,
            purpose=ev.purpose,
            round=ev.tag,
            score=ev.score,
            value=ev.value,
            error=ev.error,
            calls=ev.calls,
        ).model_dump_json()
        for ev in pool.evaluations.values()
        if ev.done
    ]
    written.append(_write(directory / "evaluations.jsonl", "".join(f"{r}\n" for r in runs)))
    folder = ensure_dir(directory / "transcripts")  # a symlinked transcripts/ is refused
    seen: Counter[tuple[str, str, str]] = Counter()
    for ev in pool.evaluations.values():
        if not ev.done:
            continue
        seen[(ev.candidate, ev.row, ev.purpose)] += 1
        n = seen[(ev.candidate, ev.row, ev.purpose)]
        name = safe_filename(f"{ev.candidate}_{ev.row}_{ev.purpose}{n}.md")
        head = f"# {ev.candidate} on {ev.row} ({ev.purpose} run {n})\n\n"
        outcome = (
            f"Error: {ev.error}" if ev.error else f"Score: {ev.score}\n\nFeedback: {ev.feedback}"
        )
        written.append(_write(safe_path(folder, name), head + ev.trace + f"\n\n{outcome}\n"))
    progress = [p.model_dump() for p in state.progress]
    written.append(_write(directory / "progress.json", json.dumps(progress, indent=2) + "\n"))
    png = render_progress(state.progress, directory / "progress.png")
    return [*written, png] if png is not None else written


def render_progress(progress: list[RoundProgress], path: Path) -> Path | None:
    """Best and mean validation score per round, and the Pareto front's size; None without
    matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, any thread
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    rounds = [p.round for p in progress]
    fig = Figure(figsize=(7, 4))
    left = fig.subplots()
    left.plot(rounds, [p.best for p in progress], marker="o", label="best (validation)")
    left.plot(rounds, [p.mean for p in progress], marker=".", label="mean of the pool")
    left.set(xlabel="round (1 = seeds)", ylabel="validation score", ylim=(0, 1.05))
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
        f"| {d} | {'-' if s is None else f'{s:.2f}'} |" for d, s in result.best_scores.items()
    )
    test = ""
    if result.test_score is not None:
        rows = len(result.splits.test)
        test = f"Test ({rows} rows, scored once at the end): best {result.test_score:.3f}"
        if result.seed_test_score is not None:
            test += f", seed {result.seed_test_score:.3f}"
        test += "."
    failures = [(c.id, c.failures) for c in result.candidates if c.failures]
    text = "\n".join(
        [
            f"# Prompt optimisation, run {result.run_id}",
            "",
            f"Splits: {result.splits.how}.",
            *[f"Warning: {w}." for w in result.splits.warnings],
            "",
            f"Best: {result.best_id} with validation mean {result.best_score:.3f} "
            f"(the seed scored {result.seed_score:.3f}), after {result.rounds} rounds of "
            f"{result.proposals_per_round} proposal(s); stopped because: {result.stop_reason}.",
            *([test] if test else []),
            *(
                [f"Finalists re-scored on validation: {', '.join(result.rescored)}."]
                if result.rescored
                else []
            ),
            f"{len(result.candidates)} candidates, "
            f"{sum(c.accepted for c in result.candidates)} accepted; "
            f"{result.billed} LLM requests billed (retries and re-asks included)"
            + (f", ${result.cost:.4f}" if result.cost else "")
            + f"; wall time {result.wall_time:.2f} s.",
            "Failed evaluations (scored 0): "
            + (", ".join(f"{c} {n}" for c, n in failures) if failures else "none")
            + ".",
            "",
            "| validation row | best candidate's score |",
            "| --- | --- |",
            scores,
            "",
            "## What the calls billed, per role",
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


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` in one step, secrets redacted; a symbolic link there is
    refused (``flowkit.files``)."""
    return write_text(path, text)
