"""``LimiterStats``: how a named limiter was used over a run, and the words the report and
the end-of-run summary use for it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LimiterStats:
    """How a named limiter was used over a run (what the report's limiter table shows).

    ``calls`` counts requests let through; ``peak_in_flight`` and ``mean_in_flight`` count
    holders of the limiter (mean over ``active_s``, from its first acquire to its last
    release); ``full_share`` is the share of that time every slot was taken; ``achieved_rpm``
    is the start rate between the first and last start; ``users`` maps each node that took
    it to "runner" (its ``uses``), "exec" (code inside exec) or "runner+exec".

    A limit that learns (``learns``: "concurrency", "rpm", "tpm") also shows what it
    learned: ``rpm``/``tpm`` are the rates the provider last stated (None: never said),
    ``paced_rpm``/``paced_tpm`` the pace it kept at the end (margin and back-off applied),
    ``concurrency`` its calls in flight allowed at the end (``max_concurrency`` is then the
    ceiling) and the range it moved in; ``refused``, ``timeouts`` and ``paused_s`` count the
    refusals and timeouts reported and the time Retry-After held starts back; ``moves`` is
    how it moved: (seconds since its first call, paced rpm, paced tpm, concurrency).
    """

    name: str
    max_concurrency: int | None
    rpm: float | None
    tpm: float | None
    calls: int
    tokens: float
    peak_in_flight: int
    mean_in_flight: float
    full_share: float
    active_s: float
    achieved_rpm: float | None
    achieved_tpm: float | None
    waits: int
    wait_s: float
    mean_wait_s: float
    users: dict[str, str]
    learns: tuple[str, ...] = ()
    paced_rpm: float | None = None
    paced_tpm: float | None = None
    concurrency: int | None = None
    concurrency_range: tuple[int, int] | None = None
    refused: int = 0
    timeouts: int = 0
    paused_s: float = 0.0
    moves: list[tuple[float, float | None, float | None, int | None]] = field(default_factory=list)

    def limits_text(self) -> str:
        """Its limits in words, e.g. "3 in flight, 600 rpm" or "auto rpm: told 1,200, pacing
        1,176"."""
        parts = []
        if "concurrency" in self.learns:
            lo, hi = self.concurrency_range or (self.concurrency, self.concurrency)
            parts.append(
                f"auto {lo}-{hi} in flight (last {self.concurrency}, ceiling "
                f"{self.max_concurrency})"
            )
        elif self.max_concurrency:
            parts.append(f"{self.max_concurrency} in flight")
        learned = (("rpm", self.rpm, self.paced_rpm), ("tpm", self.tpm, self.paced_tpm))
        for unit, told, paced in learned:
            if unit in self.learns:
                said = f"told {told:,.0f}" if told else "never told"
                pace = f"pacing {paced:,.0f}" if paced else "unpaced"
                parts.append(f"auto {unit}: {said}, {pace}")
            elif told:
                parts.append(f"{told:g} {unit}")
        return ", ".join(parts)

    def learned_text(self) -> str:
        """How a limit that learns moved, e.g. "pace 3,528 -> 1,764 rpm (lowest 1,500);
        1 refused, held 0.50 s by Retry-After"; "" for a fixed limit."""
        if not self.learns:
            return ""
        parts = []
        for unit, paces in (
            ("rpm", [m[1] for m in self.moves if m[1]]),
            ("tpm", [m[2] for m in self.moves if m[2]]),
        ):
            if paces:
                low = min(paces)
                lowest = f" (lowest {low:,.0f})" if low < min(paces[0], paces[-1]) else ""
                parts.append(f"pace {paces[0]:,.0f} -> {paces[-1]:,.0f} {unit}{lowest}")
        refused = f"{self.refused:,} refused, held {self.paused_s:.2f} s by Retry-After"
        timeouts = f", {self.timeouts:,} timed out" if self.timeouts else ""
        return "; ".join([*parts, refused + timeouts])

    def rate_text(self) -> str:
        """Achieved rates against the limits, e.g. "598/min of 600 rpm"."""
        parts = []
        if self.achieved_rpm is not None:
            of = f" of {self.rpm:g} rpm" if self.rpm else ""
            parts.append(f"{self.achieved_rpm:,.0f} calls/min{of}")
        if self.achieved_tpm is not None:
            of = f" of {self.tpm:g} tpm" if self.tpm else ""
            parts.append(f"{self.achieved_tpm:,.0f} tokens/min{of}")
        return ", ".join(parts) or "-"

    def line(self) -> str:
        """One line for an end-of-run summary."""
        cap = f"/{self.max_concurrency}" if self.max_concurrency else ""
        rate = self.rate_text()
        refused = f", {self.refused:,} refused" if self.refused else ""
        return (
            f"limiter {self.name} ({self.limits_text()}): peak {self.peak_in_flight}{cap} in "
            f"flight, {self.calls:,} calls{'' if rate == '-' else ', ' + rate}{refused}, "
            f"{self.waits:,} waited, {self.wait_s:.2f} s in all"
        )
