"""One line per cell in ``results.jsonl``, and the accuracy table built from them."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import BaseModel

from flowkit.files import ensure_dir, open_append, write_bytes, write_text
from flowkit.redact import redact

SCENARIOS = ("1", "2", "4", "3.0", "3.2", "3.3", "3.4", "3.5")
"""Every scenario, in the table's order."""
DEFAULT_SCENARIOS = ("1", "2", "4", "3.0", "3.2", "3.3")
"""The scenarios a run has unless told otherwise (3.4 and 3.5 are optional)."""
MECHANISMS = {
    "3.0": "phrasedp",
    "3.2": "inferdpt",
    "3.3": "santext+",
    "3.4": "custext+",
    "3.5": "clusant",
}
"""The private scenarios and their sanitisers."""
LABELS = {
    "1": "1 local",
    "2": "2 local + remote CoT",
    "4": "4 remote",
    "3.0": "3.0 PhraseDP",
    "3.2": "3.2 InferDPT",
    "3.3": "3.3 SANTEXT+",
    "3.4": "3.4 CusText+",
    "3.5": "3.5 CluSanT",
}
VARIANT_NOTES = {
    "reference": "reference (each mechanism as its authors' code)",
    "strict": "strict (each mechanism spends exactly the ε it is given)",
}


class Cell(BaseModel):
    """One scenario (x mechanism x ε) of one question: what was sent, said and scored.

    ``calls`` and ``tokens`` count this cell's own LLM calls (tokens estimated at about four
    characters each; the run report has the providers' counts), ``seconds`` its wall time.
    A private cell records the DP ``variant`` and how many of the question's ``words`` the
    sanitised text ``kept`` unchanged.
    """

    question_id: str
    scenario: str
    mechanism: str | None = None
    epsilon: float | None = None
    variant: str | None = None
    kept: int | None = None
    words: int | None = None
    sanitised: str | None = None
    cot: str | None = None
    answer: str | None = None
    correct: bool | None = None
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    error: str | None = None


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for ``correct`` successes out of ``n`` (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Row:
    """Counts for one scenario at one ε (None for the ε-independent scenarios)."""

    scenario: str
    epsilon: float | None
    n: int = 0
    correct: int = 0
    failed: int = 0
    kept: int = 0
    words: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def kept_share(self) -> float | None:
        """The share of the questions' words the sanitiser left unchanged (private rows)."""
        return self.kept / self.words if self.words else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)


@dataclass
class AccuracyTable:
    """Accuracy per scenario x ε; failed cells are counted apart, not scored. ``variant``
    is the DP variant that ran; ``bounds`` what each private row's mechanism spends."""

    rows: dict[tuple[str, float | None], Row] = field(default_factory=dict)
    variant: str = "reference"
    bounds: dict[tuple[str, float], str] = field(default_factory=dict)

    def add(self, cell: Cell) -> None:
        key = (cell.scenario, cell.epsilon)
        row = self.rows.setdefault(key, Row(cell.scenario, cell.epsilon))
        if cell.error is not None:
            row.failed += 1
        else:
            row.n += 1
            row.correct += bool(cell.correct)
            if cell.words:
                row.kept += cell.kept or 0
                row.words += cell.words

    def ordered(self) -> list[Row]:
        def key(row: Row) -> tuple[int, float]:
            return (SCENARIOS.index(row.scenario), row.epsilon or 0.0)

        return sorted(self.rows.values(), key=key)

    def get(self, scenario: str, epsilon: float | None = None) -> Row:
        """The row for ``scenario`` at ``epsilon`` (KeyError when it did not run)."""
        return self.rows[(scenario, epsilon)]

    @property
    def failed(self) -> int:
        return sum(row.failed for row in self.rows.values())

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "scenario",
                "mechanism",
                "epsilon",
                "n",
                "correct",
                "accuracy",
                "ci_low",
                "ci_high",
                "failed",
                "variant",
                "words_kept",
            ]
        )
        for row in self.ordered():
            low, high = row.interval
            acc, kept = row.accuracy, row.kept_share
            private = row.scenario in MECHANISMS
            writer.writerow(
                [
                    row.scenario,
                    MECHANISMS.get(row.scenario, ""),
                    "" if row.epsilon is None else f"{row.epsilon:g}",
                    row.n,
                    row.correct,
                    "" if acc is None else f"{acc:.4f}",
                    f"{low:.4f}",
                    f"{high:.4f}",
                    row.failed,
                    self.variant if private else "",
                    "" if kept is None else f"{kept:.4f}",
                ]
            )
        return out.getvalue()

    def to_markdown(self) -> str:
        """The accuracy table, then (when private rows ran) what each mechanism spends."""
        lines = [
            f"DP variant: {VARIANT_NOTES.get(self.variant, self.variant)}",
            "",
            "| scenario | ε | n | accuracy | 95 % CI (Wilson) | failed |",
            "| --- | --- | ---: | ---: | --- | ---: |",
        ]
        for row in self.ordered():
            low, high = row.interval
            acc = "-" if row.accuracy is None else f"{row.accuracy:.3f}"
            eps = "-" if row.epsilon is None else f"{row.epsilon:g}"
            lines.append(
                f"| {LABELS[row.scenario]} | {eps} | {row.n} | {acc} | "
                f"{low:.3f}-{high:.3f} | {row.failed} |"
            )
        private = [row for row in self.ordered() if row.scenario in MECHANISMS]
        if private:
            lines += [
                "",
                "| mechanism | variant | ε | privacy spent per word (formal bound) | "
                "question words unchanged |",
                "| --- | --- | --- | --- | ---: |",
            ]
            for row in private:
                assert row.epsilon is not None
                kept = "-" if row.kept_share is None else f"{row.kept_share:.1%}"
                bound = self.bounds.get((row.scenario, row.epsilon), "-")
                lines.append(
                    f"| {LABELS[row.scenario]} | {self.variant} | {row.epsilon:g} | {bound} | "
                    f"{kept} |"
                )
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> None:
        """accuracy vs ε per mechanism, ε-independent scenarios as horizontal lines (needs
        matplotlib, the ``report`` extra)."""
        from flowkit.errors import missing_extra

        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise missing_extra("matplotlib", "report", "Plotting accuracy.png") from exc
        fig, ax = plt.subplots(figsize=(8.0, 4.2))
        eps = sorted({r.epsilon for r in self.rows.values() if r.epsilon is not None})
        lines = [s for s in MECHANISMS if any(r.scenario == s for r in self.rows.values())]
        step = 0.02 * (eps[-1] - eps[0] if len(eps) > 1 else 1.0)  # side by side at one ε
        for scenario in SCENARIOS:
            points = [
                (r.epsilon or 0.0, r.accuracy, *r.interval)
                for r in self.ordered()
                if r.scenario == scenario and r.accuracy is not None
            ]
            if not points:
                continue
            if scenario in MECHANISMS:
                xs, ys, lows, highs = zip(*points, strict=True)
                shift = (lines.index(scenario) - (len(lines) - 1) / 2) * step
                xs = tuple(x + shift for x in xs)
                errors = [
                    [max(0.0, y - lo) for y, lo in zip(ys, lows, strict=True)],
                    [max(0.0, hi - y) for y, hi in zip(ys, highs, strict=True)],
                ]
                ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=LABELS[scenario])
            else:
                colour = {"1": "grey", "2": "tab:brown", "4": "black"}[scenario]
                ax.axhline(points[0][1], linestyle="--", color=colour, label=LABELS[scenario])
        if eps:
            ax.set_xticks(eps)
        ax.set_xlabel("ε")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(f"MedMCQA: accuracy by scenario and ε ({self.variant} DP variant)")
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110)
        plt.close(fig)
        write_bytes(path, png.getvalue())  # never through a link planted at path


class ResultSink:
    """Writes each finished cell to ``results.jsonl`` at once and counts it in the table.

    Keeps only counters and the questions still open, so memory does not grow with the run.
    With ``progress_every`` (seconds), a line on stderr says how many questions and cells
    are done at most that often.
    """

    def __init__(
        self,
        path: Path,
        cells_per_question: int,
        *,
        progress_every: float | None = None,
        variant: str = "reference",
    ) -> None:
        ensure_dir(path.parent.resolve())
        write_text(path, "")  # a new, empty file: a link planted at path is refused
        self.path = path
        self.table = AccuracyTable(variant=variant)
        self.cells_per_question = cells_per_question
        self.cells = 0
        self.questions = 0
        self._open: dict[str, int] = {}
        self._file: IO[str] | None = open_append(path)
        self.progress_every = progress_every
        self._reported = time.monotonic()

    def add(self, cell: Cell) -> None:
        assert self._file is not None, "ResultSink is closed"
        self._file.write(redact(cell.model_dump_json()) + "\n")
        self._file.flush()
        self.table.add(cell)
        self.cells += 1
        seen = self._open.get(cell.question_id, 0) + 1
        if seen >= self.cells_per_question:
            self._open.pop(cell.question_id, None)
            self.questions += 1
        else:
            self._open[cell.question_id] = seen
        if self.progress_every is not None:
            now = time.monotonic()
            if now - self._reported >= self.progress_every:
                self._reported = now
                print(self.status(), file=sys.stderr)

    def status(self) -> str:
        """Questions and cells done so far, in one line."""
        return (
            f"medmcqa: {self.questions} questions done, {len(self._open)} in progress; "
            f"{self.cells} cells done, {self.table.failed} failed"
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
