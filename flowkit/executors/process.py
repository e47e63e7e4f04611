"""A pool of worker processes driven from the event loop; nodes travel once per worker."""

from __future__ import annotations

import contextlib
import pickle
from collections import deque
from collections.abc import Sequence
from typing import Any

from flowkit.errors import PicklingError, WorkerCrashedError
from flowkit.executors.base import NodePayload, Outcome
from flowkit.executors.workers import Worker, exchange, remember
from flowkit.limits import Slots


class ProcessExecutor:
    """A pool of worker processes driven from the event loop."""

    def __init__(self, workers: int, start_method: str | None = None) -> None:
        self.size = workers
        self._start_method = start_method
        self._idle: deque[Worker] = deque()
        self._busy: set[Worker] = set()
        self._slots = Slots(workers)  # one per worker that may be busy at once
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.proc.pid for w in (*self._idle, *self._busy) if w.proc.pid is not None]

    async def _checkout(self) -> Worker:
        await self._slots.acquire()
        try:
            worker = self._idle.popleft() if self._idle else Worker(self._start_method)
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(worker)
        return worker

    def _checkin(self, worker: Worker, healthy: bool) -> None:
        self._busy.discard(worker)
        if healthy and not self._closed:
            self._idle.append(worker)
        else:
            worker.kill()
        self._slots.release()

    async def run(
        self, payload: NodePayload, items: Sequence[Any], attempts: Sequence[int] | None
    ) -> list[Outcome]:
        """Run ``payload``'s exec over ``items`` in one worker and return per-item outcomes
        (``attempts`` None: one exec_batch call, one outcome)."""
        msg = self._encode(payload, items, attempts, with_node=False)
        worker = await self._checkout()
        healthy = False
        try:
            if payload.key in worker.known:
                remember(worker.known, payload.key, None)
            else:
                msg = self._encode(payload, items, attempts, with_node=True)
                remember(worker.known, payload.key, True)
            try:
                data = await exchange(worker.conn, msg)
            except (EOFError, OSError):
                worker.proc.join(timeout=1)
                code = worker.proc.exitcode
                raise WorkerCrashedError(
                    f"{payload.name}: a worker process died (exit code {code}) while running "
                    f"{len(items)} item(s): it ran out of memory, crashed in native code, or "
                    "(when started by forkserver or spawn) re-ran a script that lacks an "
                    "`if __name__ == '__main__':` guard"
                ) from None
            healthy = True
            return pickle.loads(data)
        finally:
            self._checkin(worker, healthy)

    @staticmethod
    def _encode(
        payload: NodePayload, items: Sequence[Any], attempts: Sequence[int] | None, with_node: bool
    ) -> bytes:
        node_data = payload.data if with_node else None
        try:
            return pickle.dumps(
                (payload.key, node_data, attempts, list(items)),
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        except Exception as exc:
            for item in items:
                try:
                    pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as item_exc:
                    raise PicklingError(
                        f"{payload.name}: item {item!r:.80} cannot be pickled to send to a "
                        f"worker process ({item_exc}); make prep return plain data"
                    ) from item_exc
            raise PicklingError(f"{payload.name}: cannot pickle work ({exc})") from exc

    def prepare(self, node: Any) -> NodePayload:
        return NodePayload(node)

    def close(self, ok: bool = True) -> None:
        """Stop idle workers, kill busy ones, and wait for all of them."""
        self._closed = True
        while self._idle:
            worker = self._idle.popleft()
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(b"")  # asks the worker to exit
            worker.proc.join(timeout=2)
            worker.kill()
        for worker in list(self._busy):
            worker.kill()
        self._busy.clear()
