"""Checkpoints: one batch's items read from and written to the run's store (``RunStore``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowkit.errors import StoreError
from flowkit.fingerprint import fingerprint
from flowkit.node import AsyncNode, BaseNode, defines
from flowkit.results import Counts, ErrorRecord
from flowkit.store.blobs import LARGE, Blobs
from flowkit.store.codec import ResultCodec, dumps, item_key
from flowkit.store.db import Store
from flowkit.store.outcomes import StoredOutcomes
from flowkit.store.writer import StoreWriter

if TYPE_CHECKING:
    from flowkit.runner.budget import Budgets
    from flowkit.runner.items import NodeRun
    from flowkit.runner.nodes import Settings
    from flowkit.runner.tasks import TaskGroup

MISS = object()
"""What ``Checkpoint.restore`` gives for an item that must run."""


class RunStore:
    """The run's store as its checkpoints see it: the writer, the outcomes stored before
    (when resuming), whether stored failures count as done, and how many were reused."""

    def __init__(
        self,
        writer: StoreWriter,
        stored: StoredOutcomes,
        skip_failed: bool,
        tasks: Callable[[], TaskGroup],
        blobs: Blobs,
    ) -> None:
        self.writer, self.stored, self.skip_failed, self.tasks = writer, stored, skip_failed, tasks
        self.blobs = blobs
        self.resumed = 0
        self._codecs: dict[str, ResultCodec] = {}
        self._db: Store | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        run_id: str,
        flow: BaseNode,
        tasks: Callable[[], TaskGroup],
        budgets: Budgets | None = None,
    ) -> RunStore:
        """Open ``settings.store`` for run ``run_id`` of ``flow`` and take the run's lock; when
        resuming, check that the flow and settings are the ones the run was made by (its
        ``flowkit.fingerprint``), and count what its ``budgets`` had spent."""
        assert settings.store is not None
        mark = fingerprint(flow, settings.config)
        db = Store(settings.store)
        try:
            blobs = db.blobs(run_id)
            blobs.check()
            stored = db.begin(run_id, flow.name, resume=settings.resume, fingerprint=mark)
            if budgets is not None and settings.resume:
                budgets.restore(db.spent(run_id))
            writer = await db.writer(run_id)
        except BaseException:
            db.close()
            raise
        store = cls(writer, stored, settings.skip_failed, tasks, blobs)
        store._db = db
        return store

    async def close(self, run_id: str, status: str, budgets: Budgets | None = None) -> None:
        """Wait for the writer to commit everything, then record how the run ended (and
        what its budgets spent)."""
        try:
            await self.writer.close()
            if self._db is not None:
                self._db.finish(run_id, status, budgets.spent() if budgets is not None else None)
        finally:
            self.blobs.close()
            if self._db is not None:
                self._db.close()

    def checkpoint(self, nr: NodeRun, node: BaseNode, path: str) -> Checkpoint | None:
        """A checkpoint for one batch of ``node`` at ``path``; None if the node keeps none."""
        plan = nr.plan
        if not plan.checkpoint:
            return None
        codec = self._codecs.get(plan.name)
        if codec is None:
            on_loop = plan.executor == "async" and isinstance(node, AsyncNode)
            method = getattr(type(node), "exec_async" if on_loop else "exec")
            codec = self._codecs[plan.name] = ResultCodec.for_method(plan.name, method)
        return Checkpoint(self, codec, node, path, nr.counts(path))


class Checkpoint:
    """Reads and writes one batch's items in the store.

    Results saved during one pass of the event loop are encoded together and handed to the
    writer as one group at the end of that pass (``flush``), before anything else can see or
    change them; the batch flushes once more when it ends, so ``post`` never runs ahead of the
    store. When exec keeps the loop busy, a group is handed over once its first result has
    waited ``FLUSH_AFTER`` seconds.

    The writer's buffer is bounded: while it is above its high-water mark (``paused``), lanes
    ``await drained()`` before they take their next item.
    """

    FLUSH_AFTER = 0.02

    __slots__ = (
        "codec",
        "counts",
        "error",
        "item_key",
        "params",
        "path",
        "pending",
        "since",
        "store",
        "stored",
        "writer",
    )

    def __init__(
        self, store: RunStore, codec: ResultCodec, node: BaseNode, path: str, counts: Counts
    ) -> None:
        self.store, self.path, self.codec, self.writer = store, path, codec, store.writer
        self.counts = counts
        self.stored = store.stored
        self.item_key: Callable[[Any], str] | None = (
            node.item_key if defines(node, "item_key") and callable(node.item_key) else None
        )
        self.params = node.params
        self.pending: list[tuple[str, int, Any]] = []
        self.since = 0.0
        self.error: StoreError | None = None

    @property
    def paused(self) -> bool:
        """Whether the writer holds more than its high-water mark: take no new item yet."""
        return self.writer.paused

    async def drained(self) -> None:
        """Wait until the writer is back under its low-water mark."""
        await self.writer.drained()

    def key(self, item: Any) -> str:
        if self.item_key is not None:
            return str(self.item_key(item))
        try:
            return item_key(item, self.params)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: cannot make a checkpoint key for item {item!r:.80} ({exc}); "
                "define item_key(self, item) -> str on the node, or set checkpoint = False"
            ) from None

    def recall(self, item: Any, results: list[Any], index: int) -> str | None:
        """``item``'s key, or None when its stored outcome was put in ``results[index]``."""
        key = self.key(item)
        if self.stored:
            stored = self.restore(key, index)
            if stored is not MISS:
                results[index] = stored
                return None
        return key

    def restore(self, key: str, index: int | None = None) -> Any:
        """The stored outcome for ``key`` (item ``index``), or ``MISS`` when it must run."""
        hit = self.stored.get((self.path, key), index)
        if hit is None:
            return MISS
        ok, text, raw = hit
        if ok:
            try:
                value = self.codec.decode(text, raw)
            except ValueError:  # stored by an exec with another return type: run it again
                return MISS
            self.store.resumed += 1
            return value
        if self.store.skip_failed:
            self.store.resumed += 1
            return ErrorRecord.model_validate_json(text)
        return MISS

    def save_outcome(self, key: str, index: int, value: Any) -> None:
        """Store what an item ended with after its failure was handled: a record or a value."""
        if isinstance(value, ErrorRecord):
            self.save_record(key, index, value)
        else:
            self.save(key, index, value)

    def save_record(self, key: str, index: int, record: ErrorRecord) -> None:
        row = [key, index, record.model_dump(mode="json")]
        self.writer.put(self.path, False, dumps([row]).encode())
        self.counts.items += 1

    def save(self, key: str, index: int, value: Any) -> None:
        """Store exec's result; it is encoded with the others saved in this pass of the loop."""
        if self.error is not None:
            raise self.error
        pending = self.pending
        pending.append((key, index, value))
        if len(pending) == 1:
            self.since = time.monotonic()
            self.store.tasks().call_soon(self._flush_soon)
        elif time.monotonic() - self.since > self.FLUSH_AFTER:
            self.flush()
        if isinstance(value, str | bytes) and len(value) >= LARGE:
            self.flush()  # a large result goes at once: the writer works while exec does

    def _flush_soon(self) -> None:
        try:
            self.flush()
        except StoreError as exc:  # raised to the run by the next save, or by close
            self.error = exc

    def flush(self) -> None:
        """Hand every pending result to the writer as one group."""
        if self.pending:
            rows, self.pending = self.pending, []
            self.counts.items += len(rows)  # an item is done once the writer has it
            groups, large, error = self.codec.encode_groups(rows)
            for text in groups:
                self.writer.put(self.path, True, text)
            if large:  # each file is whole before its row is handed over
                write = self.store.blobs.write
                refs = [[key, index, *write(data)] for key, index, data in large]
                self.writer.put(self.path, True, dumps(refs).encode(), blob=True)
            if error is not None:
                raise error

    def close(self) -> None:
        """End of the batch: flush, and raise any error met while encoding."""
        self.flush()
        if self.error is not None:
            raise self.error
