"""Worker processes as an executor, for CPU-bound pure Python: items travel in chunks and a
node travels once per worker (keyed by a digest of its pickle)."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence
from typing import Any

from flowkit.errors import PicklingError, WorkerCrashedError
from flowkit.executors.base import Chunked, NodePayload, Outcome
from flowkit.executors.workers import (
    Worker,
    WorkerPool,
    context,
    exchange,
    remember,
    start_worker,
    worker_main,
)


class ProcessExecutor:
    """A pool of ``workers`` processes driven from the event loop, started as work needs
    them (``start_method``: see ``flowkit.executors.workers.context``)."""

    def __init__(self, workers: int, start_method: str | None = None) -> None:
        self.size = workers
        self._start_method = start_method
        self._pool = WorkerPool(workers, self._spawn)

    def _spawn(self, slot: int) -> Worker:
        proc, conn = start_worker(context(self._start_method), worker_main)
        return Worker(proc, conn, slot)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return self._pool.pids

    def bind(self, node: Any) -> ProcessBinding:
        return ProcessBinding(self._pool, NodePayload(node))

    def close(self, ok: bool = True) -> None:
        """Stop idle workers, kill busy ones, and wait for all of them."""
        self._pool.close()


class ProcessBinding(Chunked):
    """A node, pickled once, on the process pool."""

    __slots__ = ("payload", "pool")

    takes_timeout = True  # run(..., timeout=S): the clock starts once a worker has the chunk

    def __init__(self, pool: WorkerPool, payload: NodePayload) -> None:
        self.pool, self.payload = pool, payload

    async def run(
        self, items: Sequence[Any], attempts: Sequence[int] | None, timeout: float | None = None
    ) -> list[Outcome]:
        """Run exec over ``items`` in one worker and return per-item outcomes (``attempts``
        None: one exec_batch call, one outcome). Past ``timeout`` seconds from the moment
        the worker has them, TimeoutError: the worker is killed (a fresh one replaces it)."""
        payload = self.payload
        msg = _encode(payload, items, attempts, with_node=False)
        worker = await self.pool.checkout()
        healthy = False
        try:
            if payload.key in worker.known:
                remember(worker.known, payload.key, None)
            else:
                msg = _encode(payload, items, attempts, with_node=True)
                remember(worker.known, payload.key, True)
            try:
                async with asyncio.timeout(timeout):
                    data = await exchange(worker.conn, msg)
            except TimeoutError:  # an OSError too, but not a crash: the caller's timeout
                raise
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
            outcomes: list[Outcome] = pickle.loads(data)
            return outcomes
        finally:
            self.pool.checkin(worker, healthy)


def _encode(
    payload: NodePayload, items: Sequence[Any], attempts: Sequence[int] | None, with_node: bool
) -> bytes:
    node_data = payload.data if with_node else None
    try:
        return pickle.dumps(
            (payload.key, node_data, attempts, list(items)), protocol=pickle.HIGHEST_PROTOCOL
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
