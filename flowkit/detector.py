"""Finds fake parallelism: node code that blocks the event loop, so nothing else runs meanwhile.

A watchdog thread pings the loop (``call_soon_threadsafe``) a few times per threshold. While a
ping goes unanswered, it samples the loop thread's stack and walks outward to the first frame
whose ``self`` is a node: that node's hook is the culprit. When the loop answers again, a call
that held it longer than the threshold becomes a ``loop_blocked`` event, and the first one per
node a ``FlowkitWarning`` pointing at the line that was running. Items pay nothing; the loop
answers a ping about every ``threshold / 4`` seconds.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType

from flowkit.errors import FlowkitWarning
from flowkit.events import LoopBlocked, Observer, Subscriber
from flowkit.graph import build_graph, is_parallel
from flowkit.node import AsyncNode, BaseNode, node_options
from flowkit.results import RunInfo


@dataclass(frozen=True)
class Block:
    """The loop was stuck in ``node``'s ``hook`` for about ``seconds``, from ``started``;
    ``filename`` and ``lineno`` locate the hook's line that was running."""

    node: str
    hook: str
    started: float
    seconds: float
    filename: str
    lineno: int


class BlockDetector(Observer):
    """Watches one run's event loop for hooks that block it longer than ``threshold`` seconds.

    ``paths`` maps node names to their place in the graph (for the events); ``emit`` receives
    the ``loop_blocked`` events; ``blocks`` lists what was found. The runner builds one per run
    with ``for_run``, only where blocking can matter. It hears no event, so it costs the run
    none.
    """

    wants_events = False

    def __init__(
        self,
        threshold: float,
        *,
        paths: dict[str, str] | None = None,
        emit: Subscriber | None = None,
    ) -> None:
        self.threshold = threshold
        self.paths = paths or {}
        self.emit = emit
        self.blocks: list[Block] = []
        self._tick = threshold / 4
        self._warned: set[str] = set()
        self._pending: deque[Block] = deque()
        self._stop = threading.Event()
        self._answered = threading.Event()
        self._run_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._thread: threading.Thread | None = None

    @classmethod
    def for_run(
        cls,
        root: BaseNode,
        threshold: float,
        *,
        start_method: str | None,
        emit: Subscriber | None,
        limits: Mapping[str, int] | None = None,
    ) -> BlockDetector | None:
        """A detector for a run of ``root``, or None where it would not help or would hurt.

        Not for flows without async nodes, nor for flows whose every parallel construct is
        limited to one at a time (``limits`` holds the runner's overrides by node name): in
        both, nothing else could have run meanwhile. Nor for runs whose process workers may
        still start with fork (a watchdog thread would force the slower forkserver; pass
        ``Runner(start_method=...)`` to have both).
        """
        graph = build_graph(root)
        nodes = [g.node for g in graph.nodes]
        if not any(isinstance(n, AsyncNode) for n in nodes):
            return None
        limits = limits or {}
        options = [node_options(n, warn=False) for n in nodes]
        if not any(
            is_parallel(n) and o.limit(n.name, limits) != 1
            for n, o in zip(nodes, options, strict=True)
        ):
            return None
        if start_method is None and any(o.executor == "process" for o in options):
            return None
        paths: dict[str, str] = {}
        for g in graph.nodes:
            paths.setdefault(g.node.name, g.path)
        return cls(threshold, paths=paths, emit=emit)

    # -- lifecycle (on the event loop) ------------------------------------------------------

    def start(self, info: RunInfo) -> None:
        self._run_id = info.run_id
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="flowkit-detector", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._answered.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._flush()

    # -- the watchdog thread ----------------------------------------------------------------

    def _watch(self) -> None:
        if hasattr(signal, "pthread_sigmask"):  # Ctrl-C is the main thread's to hear
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        loop = self._loop
        assert loop is not None
        while True:
            answered = self._answered = threading.Event()
            if self._stop.is_set():  # checked after publishing the event, so close() wakes us
                return
            sent = time.monotonic()
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed: the run is over
                return
            if answered.wait(self._tick):
                self._stop.wait(self._tick)
                continue
            blocks = self._sample_until(answered, sent)
            if blocks:
                self._pending.extend(blocks)
                try:
                    loop.call_soon_threadsafe(self._flush)
                except RuntimeError:
                    return

    def _sample_until(self, answered: threading.Event, sent: float) -> list[Block]:
        """Sample the stuck loop until it answers; the blocks worth reporting.

        A node's hook is reported when one call of it (one frame, kept alive here so it cannot
        be confused with a later call) held the loop past the threshold. Many quick calls that
        never await also keep the loop busy, but none of them blocks it.
        """
        per_hook: Counter[tuple[str, str]] = Counter()
        per_call: Counter[FrameType] = Counter()
        hook_of: dict[FrameType, tuple[str, str]] = {}
        where: dict[tuple[str, str], tuple[str, int]] = {}
        samples = 0
        while not answered.wait(self._tick):
            samples += 1
            culprit = self._culprit()
            if culprit is not None:
                frame, hook = culprit
                per_hook[hook] += 1
                per_call[frame] += 1
                hook_of[frame] = hook
                where.setdefault(hook, (frame.f_code.co_filename, frame.f_lineno))
        seconds = time.monotonic() - sent
        longest: Counter[tuple[str, str]] = Counter()
        for frame, count in per_call.items():
            longest[hook_of[frame]] = max(longest[hook_of[frame]], count)
        return [
            Block(node, hook, sent, seconds * per_hook[node, hook] / samples, *where[node, hook])
            for (node, hook), count in longest.items()
            if seconds * count / samples >= self.threshold
        ]

    def _culprit(self) -> tuple[FrameType, tuple[str, str]] | None:
        """The frame of the node hook the loop thread is in, with (node name, hook name)."""
        frame: FrameType | None = sys._current_frames().get(self._loop_thread)
        while frame is not None:
            if frame.f_globals.get("__name__", "").startswith("asyncio"):
                return None  # reached the loop itself: the code running is not a node's
            if "self" in frame.f_code.co_varnames:
                owner = frame.f_locals.get("self")
                if isinstance(owner, BaseNode):
                    return frame, (owner.name, frame.f_code.co_name)
            frame = frame.f_back
        return None

    # -- reporting (on the event loop) ------------------------------------------------------

    def _flush(self) -> None:
        while self._pending:
            block = self._pending.popleft()
            self.blocks.append(block)
            if self.emit is not None:
                path = self.paths.get(block.node, block.node)
                self.emit(
                    LoopBlocked(
                        block.started,
                        self._run_id,
                        path,
                        block.node,
                        block.hook,
                        block.seconds,
                        self.threshold,
                        f"{block.filename}:{block.lineno}",
                    )
                )
            if block.node not in self._warned:
                self._warned.add(block.node)
                # attributed to the node's own line, so the warning shows the blocking code
                warnings.warn_explicit(
                    advice(block, self.threshold), FlowkitWarning, block.filename, block.lineno
                )


def advice(block: Block, threshold: float) -> str:
    """The warning for a block: what happened and how to make the work really parallel."""
    where = f"{block.node}.{block.hook}"
    said = (
        f"flowkit: {where} blocked the event loop for {block.seconds:.2f} s (threshold "
        f"{threshold:g} s); nothing else ran meanwhile, so its parallelism was fake. "
    )
    if block.hook in ("exec", "exec_async"):
        return said + (
            f"Await non-blocking I/O in exec_async, or give {block.node} a sync exec with "
            'executor="thread" (blocking I/O, sync SDKs) or executor="process" (CPU-bound work)'
        )
    return said + (
        f"{block.hook} runs on the event loop: move the blocking work into exec and give "
        f'{block.node} executor="thread" or executor="process"'
    )
