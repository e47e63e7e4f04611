"""The runner's cache across runs, as one batch of a cached node sees it.

``RunCache`` is the run's handle on the cache file (``Runner(cache="cache.db")``). For each
batch of a node with a cache policy, ``CachedBatch`` stands where the batch's checkpoint
stands (``recall``, ``save``, ...): an item found in the cache is not run, and goes to the
run's store like a result that just landed; a result that landed on its first try, or after
retries, is kept in the cache (failures and fallback values are not).

The key of an item is a digest of the node's name, its code and params (the same
``flowkit.fingerprint`` marks a resume compares), the item (``CachePolicy.key(item)``, else
the node's ``item_key``, else the item itself) and what the node's ``cache_key(item)``
returns (an LLM node: its model and request settings). Attributes set in a node's
constructor are not part of it: put what changes results in params or ``cache_key``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import from_json

from flowkit.errors import FlowkitWarning, StoreError
from flowkit.fingerprint import node_digest
from flowkit.node import AsyncNode, BaseNode, CachePolicy, defines
from flowkit.store.cache import ResultCache
from flowkit.store.codec import ResultCodec, dumps

if TYPE_CHECKING:
    from flowkit.runner.checkpoint import Checkpoint
    from flowkit.runner.nodes import NodeRun
    from flowkit.runner.tasks import TaskGroup


class RunCache:
    """The cache file for one run: lookups, grouped writes, a codec per node."""

    def __init__(self, path: str | Path, tasks: Callable[[], TaskGroup]) -> None:
        self.file = ResultCache(path)
        self.tasks = tasks
        self._codecs: dict[str, ResultCodec] = {}
        self._flushing = False
        self._unwritable: set[str] = set()
        self._write_failed = False

    def batch(self, nr: NodeRun, node: BaseNode, path: str, ck: Checkpoint | None) -> CachedBatch:
        plan = nr.plan
        assert plan.cache is not None
        codec = self._codecs.get(plan.name)
        if codec is None:
            on_loop = plan.executor == "async" and isinstance(node, AsyncNode)
            method = getattr(type(node), "exec_async" if on_loop else "exec")
            codec = self._codecs[plan.name] = ResultCodec.for_method(plan.name, method)
        return CachedBatch(self, codec, nr, node, path, ck, plan.cache)

    def get(self, key: str, ttl: float | None, codec: ResultCodec) -> tuple[bool, Any]:
        text = self.file.get(key, ttl)
        if text is None:
            return False, None
        try:
            data = from_json(text, cache_strings=True)[0][2]
            return True, codec.adapter.validate_python(data) if codec.adapter else data
        except (ValueError, IndexError, TypeError):  # made by exec with another return type
            return False, None

    def put(self, key: str, name: str, value: Any, codec: ResultCodec) -> None:
        text, error = codec.encode_rows([(key, 0, value)])
        if error is not None:
            if name not in self._unwritable:
                self._unwritable.add(name)
                warnings.warn(
                    f"flowkit: {name}'s results are not cached: {error}",
                    FlowkitWarning,
                    stacklevel=2,
                )
            return
        self.file.put(key, name, text.decode())
        if not self._flushing:
            self._flushing = True
            self.tasks().call_soon(self.flush)

    def flush(self) -> None:
        """Write what was put; a cache that cannot be written is said once, and the run
        goes on (its results are right, only not kept for later runs)."""
        self._flushing = False
        try:
            self.file.flush()
        except StoreError as exc:
            if not self._write_failed:
                warnings.warn(f"flowkit: results not cached: {exc}", FlowkitWarning, stacklevel=2)
            self._write_failed = True

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.file.close()


class CachedBatch:
    """One batch of a cached node: its checkpoint's interface, the cache in front of it."""

    __slots__ = (
        "cache",
        "ck",
        "codec",
        "counts",
        "item_key",
        "keys",
        "name",
        "node",
        "policy",
        "prefix",
        "salt",
    )

    def __init__(
        self,
        cache: RunCache,
        codec: ResultCodec,
        nr: NodeRun,
        node: BaseNode,
        path: str,
        ck: Checkpoint | None,
        policy: CachePolicy,
    ) -> None:
        self.cache, self.codec, self.ck, self.policy, self.node = cache, codec, ck, policy, node
        self.name = nr.name
        self.counts = nr.counts(path)
        self.prefix = f"{nr.name}\x00{node_digest(node)}"
        self.item_key: Callable[[Any], Any] | None = policy.key or (
            node.item_key if defines(node, "item_key") else None
        )
        self.salt: Callable[[Any], Any] | None = (
            node.cache_key if defines(node, "cache_key") else None
        )
        self.keys: dict[int, str] = {}

    def key(self, item: Any) -> str:
        """The item's cache key."""
        part = self.item_key(item) if self.item_key is not None else item
        salt = self.salt(item) if self.salt is not None else None
        try:
            text = dumps([self.prefix, part, salt])
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.name}: cannot make a cache key for item {item!r:.80} ({exc}); define "
                "item_key(self, item) -> str on the node, or CachePolicy(key=...)"
            ) from None
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()

    @property
    def paused(self) -> bool:
        return self.ck.paused if self.ck is not None else False

    async def drained(self) -> None:
        if self.ck is not None:
            await self.ck.drained()

    def recall(self, item: Any, results: list[Any], index: int) -> str | None:
        """None when the item's result is known (from the run's store, or the cache: then
        it goes to the store too); else the key its result is saved under."""
        key = self.ck.recall(item, results, index) if self.ck is not None else ""
        if key is None:
            return None
        ckey = self.key(item)
        hit, value = self.cache.get(ckey, self.policy.ttl, self.codec)
        if hit:
            results[index] = value
            self.counts.cached += 1
            if self.ck is not None:
                self.ck.save(key, index, value)  # counted done when handed to the writer
            else:
                self.counts.items += 1
            return None
        if self.ck is None:
            return ckey
        self.keys[index] = ckey
        return key

    def save(self, key: str, index: int, value: Any) -> None:
        """exec's result: to the run's store, and to the cache."""
        if self.ck is None:
            self.counts.items += 1
            self.cache.put(key, self.name, value, self.codec)
            return
        self.ck.save(key, index, value)
        ckey = self.keys.pop(index, None)
        if ckey is not None:
            self.cache.put(ckey, self.name, value, self.codec)

    def save_outcome(self, key: str, index: int, value: Any) -> None:
        """A failed item's outcome (a record or a fallback value): the store only."""
        self.keys.pop(index, None)
        if self.ck is not None:
            self.ck.save_outcome(key, index, value)
        else:
            self.counts.items += 1

    def save_record(self, key: str, index: int, record: Any) -> None:
        self.keys.pop(index, None)
        if self.ck is not None:
            self.ck.save_record(key, index, record)
        else:
            self.counts.items += 1

    def flush(self) -> None:
        if self.ck is not None:
            self.ck.flush()

    def close(self) -> None:
        if self.ck is not None:
            self.ck.close()
