"""Ray as an executor: chunks of items as Ray tasks, on a local cluster or one given by
address."""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

from flowkit.errors import WorkerCrashedError
from flowkit.executors.base import (
    Chunked,
    NodePayload,
    Outcome,
    cpu_count,
    portable_outcomes,
    run_items,
)
from flowkit.extras import require


def _ray_run_items(node: Any, items: list[Any], attempts: list[int] | None) -> bytes:
    return portable_outcomes(run_items(node, items, attempts), node.name)


class RayExecutor:
    """Runs chunks as Ray tasks; starts a local Ray cluster when none is running."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        ray: Any = require("ray", "executor='ray'")
        self._ray = ray
        if not ray.is_initialized():
            ray.init(
                address=address,
                num_cpus=None if address else (num_cpus or cpu_count()),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
            )
        self.size = int(ray.available_resources().get("CPU", 1)) or 1
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run_items)
        self._refs: dict[bytes, Any] = {}
        self._pending: set[Any] = set()

    def bind(self, node: Any) -> RayBinding:
        payload = NodePayload(node)
        ref = self._refs.get(payload.key)
        if ref is None:
            ref = self._refs[payload.key] = self._ray.put(pickle.loads(payload.data))
        return RayBinding(self, payload.name, ref)

    async def submit(
        self, name: str, ref: Any, items: Sequence[Any], attempts: Sequence[int] | None
    ) -> list[Outcome]:
        task = self._remote.remote(ref, list(items), None if attempts is None else list(attempts))
        self._pending.add(task)
        try:
            data = await task
        except asyncio.CancelledError:
            self._ray.cancel(task, force=True)
            raise
        except self._ray.exceptions.WorkerCrashedError as exc:
            raise WorkerCrashedError(f"{name}: a Ray worker died: {exc}") from None
        finally:
            self._pending.discard(task)
        outcomes: list[Outcome] = pickle.loads(data)
        return outcomes

    def close(self, ok: bool = True) -> None:
        """Cancel this run's unfinished Ray tasks; the cluster itself stays up for reuse."""
        for task in list(self._pending):
            self._ray.cancel(task, force=True)
        self._pending.clear()
        self._refs.clear()


class RayBinding(Chunked):
    """A node, put in Ray's object store once, run as Ray tasks."""

    __slots__ = ("executor", "name", "ref")

    def __init__(self, executor: RayExecutor, name: str, ref: Any) -> None:
        self.executor, self.name, self.ref = executor, name, ref

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        return await self.executor.submit(self.name, self.ref, items, attempts)
