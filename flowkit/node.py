"""PocketFlow-compatible nodes: the same hooks, transitions and return values.

Nodes say *what* to do; the runner (``flowkit.runner``) decides how many run at once and where.
Besides PocketFlow's ``max_retries`` and ``wait``, every node accepts the runner options below,
as class attributes or constructor keywords.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flowkit.engine import current_retry, engine
from flowkit.errors import ConfigError, FlowkitWarning, GraphError, UsageError
from flowkit.limits import check_limit
from flowkit.retry import Retry

__all__ = [
    "AsyncBatchNode",
    "AsyncNode",
    "AsyncParallelBatchNode",
    "BaseNode",
    "BatchNode",
    "CachePolicy",
    "Node",
]

EXECUTORS = ("async", "thread", "process", "ray")
"""The built-in executors; a runner may add its own (``Runner(executors=...)``)."""
ON_ERROR = ("raise", "collect")

_ids = itertools.count(1)


def check_executor(value: Any, owner: str) -> str | None:
    """An executor name: a built-in one or one a runner defines (checked when a run plans)."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(
            f"{owner}: executor must be a name ({', '.join(EXECUTORS)}, or one given to "
            f"Runner(executors=...)), got {value!r}"
        )
    return value


def check_on_error(value: Any, owner: str) -> str:
    if value not in ON_ERROR:
        raise ConfigError(f"{owner}: on_error must be 'raise' or 'collect', got {value!r}")
    return value


def check_timeout(value: Any, owner: str, what: str = "timeout") -> float | None:
    """A timeout (or ``what``) in seconds, a positive finite number, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{owner}: {what} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CachePolicy:
    """How a node's results are kept in the runner's cache (``Runner(cache="cache.db")``)
    and reused by later runs.

    A result is reused when the node's code (its ``flowkit.fingerprint``), its params, the
    item and, where the node defines ``cache_key(item)``, what that returns (an LLM node's
    model and request settings) are the same. ``ttl`` (seconds) ages entries out; ``key``
    (a function of the item) replaces the item's own key, e.g. to leave out a field that
    does not change the result. ``cache = True`` on a node is ``CachePolicy()``.
    """

    ttl: float | None = None
    key: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None:
            check_timeout(self.ttl, "CachePolicy", "ttl")
        if self.key is not None and not callable(self.key):
            raise ConfigError(f"CachePolicy.key must be a function of the item, got {self.key!r}")


def check_cache(value: Any, owner: str) -> CachePolicy | None:
    """``cache`` as a policy: True is the default one; False or None is none."""
    if value is None or value is False:
        return None
    if value is True:
        return CachePolicy()
    if isinstance(value, CachePolicy):
        return value
    raise ConfigError(f"{owner}: cache must be True, False or a flowkit.CachePolicy, got {value!r}")


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "max_concurrency": (int,),
    "executor": (str,),
    "uses": (tuple, list, str),
    "retry": (Retry,),
    "on_error": (str,),
    "max_errors": (int,),
    "chunk_size": (int,),
    "checkpoint": (bool,),
    "cpu_bound": (bool,),
    "timeout": (int, float),
    "cache": (bool, CachePolicy),
}


@dataclass(frozen=True)
class NodeOptions:
    """A node's runner options as the runner reads them (defaults where it gave none)."""

    max_concurrency: int | None
    executor: str | None
    uses: tuple[str, ...]
    retry: Retry | None
    on_error: str
    max_errors: int | None
    chunk_size: int | None
    checkpoint: bool
    cpu_bound: bool = False
    timeout: float | None = None
    cache: CachePolicy | None = None

    def limit(self, name: str, overrides: Mapping[str, int]) -> int | None:
        """The node's limit in a run: the runner's override for ``name``, else its own."""
        return overrides.get(name, self.max_concurrency)


def node_options(node: BaseNode, *, warn: bool = True) -> NodeOptions:
    """Read and check ``node``'s runner options.

    PocketFlow code may already use one of these names for its own purposes (say
    ``self.executor = ThreadPoolExecutor()``): a value of another type is not a runner
    option, so flowkit leaves it to the node, uses the default and says so with a
    FlowkitWarning. A value of the right type that is out of range is a ConfigError.
    """
    values: dict[str, Any] = {}
    for option, types in _OPTION_TYPES.items():
        value = getattr(node, option, None)
        default = getattr(BaseNode, option)
        ok = value is None or (
            isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        )
        if option == "uses" and value is not None and ok and not isinstance(value, str):
            ok = all(isinstance(name, str) for name in value)
        if not ok:
            if warn:
                warnings.warn(
                    f"{node.name}: its attribute {option!r} holds a {type(value).__name__}, "
                    f"not a flowkit runner option, so the runner ignores it (default "
                    f"{default!r}); rename the attribute if you meant it for your own code",
                    FlowkitWarning,
                    stacklevel=3,
                )
            value = default
        values[option] = default if value is None and option in ("on_error", "uses") else value
    uses = values["uses"]
    if isinstance(uses, str):
        uses = (uses,)
    owner = node.name
    return NodeOptions(
        max_concurrency=(
            None
            if values["max_concurrency"] is None
            else check_limit(values["max_concurrency"], f"{owner}: max_concurrency")
        ),
        executor=check_executor(values["executor"], owner),
        uses=tuple(uses),
        retry=values["retry"],
        on_error=check_on_error(values["on_error"], owner),
        max_errors=(
            None
            if values["max_errors"] is None
            else check_limit(values["max_errors"], f"{owner}: max_errors")
        ),
        chunk_size=(
            None
            if values["chunk_size"] is None
            else check_limit(values["chunk_size"], f"{owner}: chunk_size")
        ),
        checkpoint=True if values["checkpoint"] is None else values["checkpoint"],
        cpu_bound=bool(values["cpu_bound"]),
        timeout=check_timeout(values["timeout"], owner),
        cache=check_cache(values["cache"], owner),
    )


def node_id(node: BaseNode) -> int:
    """What identifies ``node`` and the copies a flow runs of it (``copy.copy`` keeps it)."""
    return getattr(node, "_fk_id", None) or id(node)


def defines(node: BaseNode, hook: str) -> bool:
    """Whether ``node`` defines the optional hook ``hook`` (exec_batch, item_key, ...)."""
    return getattr(type(node), hook) is not getattr(BaseNode, hook) or hook in vars(node)


def successors_of(node: BaseNode) -> list[tuple[Any, BaseNode]]:
    """``node``'s successors that are nodes or flows, with their actions."""
    return [(a, n) for a, n in node.successors.items() if isinstance(n, BaseNode)]


class BaseNode:
    """A step with ``prep(shared) -> exec(prep_res) -> post(shared, prep_res, exec_res)``.

    Runner options (class attributes or keywords): ``name``; ``max_concurrency`` (exec calls in
    flight across the whole run); ``executor`` ("async", "thread", "process", "ray", or the
    name of an executor given to ``Runner(executors=...)``);
    ``uses`` (named limiters); ``retry`` (a ``flowkit.Retry``); ``on_error`` ("raise" or
    "collect") and ``max_errors``; ``chunk_size`` (items per trip to a worker process);
    ``timeout`` (seconds per try of exec: past it the try fails with ``ItemTimeoutError`` and
    is retried per the node's policy); ``cache`` (True or a ``CachePolicy``: results kept in
    the runner's cache and reused by later runs).
    With a store, results are checkpointed unless ``checkpoint = False``; define
    ``item_key(self, item) -> str`` to choose how items are recognised on resume.
    ``cpu_bound = True`` says a thread node's exec computes rather than waits: its time in a
    thread off the CPU (the GIL, other threads) then counts as waiting, not running.

    Optional hooks, used only where a subclass defines them: ``exec_batch(items)`` or
    ``exec_batch_async(items)`` (micro-batching: one call for up to ``batch_size`` items,
    sent at most ``batch_wait_ms`` after the first arrives), ``item_key``, ``cache_key``
    and ``post_item(shared, item, result)`` / ``post_item_async`` (called as each item of a
    batch lands, before ``post`` gets the whole batch).
    """

    max_concurrency: int | None = None
    executor: str | None = None
    uses: tuple[str, ...] = ()
    retry: Retry | None = None
    on_error: str = "raise"
    max_errors: int | None = None
    chunk_size: int | None = None
    checkpoint: bool = True
    cpu_bound: bool = False
    timeout: float | None = None
    cache: bool | CachePolicy | None = None
    batch_size: int = 32
    batch_wait_ms: float = 5.0

    def __init__(
        self,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
        executor: str | None = None,
        uses: Iterable[str] | None = None,
        retry: Retry | None = None,
        on_error: str | None = None,
        max_errors: int | None = None,
        chunk_size: int | None = None,
        checkpoint: bool | None = None,
        cpu_bound: bool | None = None,
        timeout: float | None = None,
        cache: bool | CachePolicy | None = None,
    ) -> None:
        self.params: dict[str, Any] = {}
        self.successors: dict[Any, BaseNode] = {}
        self._fk_id = next(_ids)
        self._fk_name = name
        owner = f"{type(self).__name__} {name!r}" if name else type(self).__name__
        if max_concurrency is not None:
            self.max_concurrency = check_limit(max_concurrency, f"{owner}: max_concurrency")
        if executor is not None:
            self.executor = check_executor(executor, owner)
        if uses is not None:
            if isinstance(uses, str):
                uses = (uses,)
            self.uses = tuple(uses)
        if retry is not None:
            if not isinstance(retry, Retry):
                raise ConfigError(f"{owner}: retry must be a flowkit.Retry, got {retry!r}")
            self.retry = retry
        if on_error is not None:
            self.on_error = check_on_error(on_error, owner)
        if max_errors is not None:
            self.max_errors = check_limit(max_errors, f"{owner}: max_errors")
        if chunk_size is not None:
            self.chunk_size = check_limit(chunk_size, f"{owner}: chunk_size")
        if checkpoint is not None:
            self.checkpoint = bool(checkpoint)
        if cpu_bound is not None:
            self.cpu_bound = bool(cpu_bound)
        if timeout is not None:
            self.timeout = check_timeout(timeout, owner)
        if cache is not None:
            self.cache = check_cache(cache, owner)

    @property
    def name(self) -> str:
        """The node's name: given at construction, else its class name."""
        return getattr(self, "_fk_name", None) or type(self).__name__

    @name.setter
    def name(self, value: str) -> None:
        self._fk_name = value

    @property
    def cur_retry(self) -> int:
        """Index of the try in progress for the item being executed (0 on the first try)."""
        return current_retry.get()

    @cur_retry.setter
    def cur_retry(self, value: int) -> None:
        current_retry.set(value)

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def next(self, node: BaseNode, action: Any = "default") -> BaseNode:
        """Make ``node`` the successor for ``action`` (any hashable value, as in PocketFlow;
        a string is usual). ``None`` as the node ends the flow there."""
        if node is not None and not isinstance(node, BaseNode):
            warnings.warn(
                f"{self.name}: the successor for action {action!r} is a "
                f"{type(node).__name__}, not a node or flow; the flow fails if it gets there. "
                "Pass a node (or None to end the flow)",
                FlowkitWarning,
                stacklevel=2,
            )
        if action in self.successors:
            warnings.warn(f"Overwriting successor for action '{action}'", stacklevel=2)
        self.successors[action] = node
        return node

    def prep(self, shared: Any) -> Any:
        pass

    def exec(self, prep_res: Any) -> Any:
        pass

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        pass

    def exec_batch(self, items: list[Any]) -> list[Any]:
        """Optional: exec for many items at once, one result per item, in order."""
        raise NotImplementedError

    async def exec_batch_async(self, items: list[Any]) -> list[Any]:
        """Optional: the async exec_batch."""
        raise NotImplementedError

    def item_key(self, item: Any) -> str:
        """Optional: the key that recognises ``item`` in the store on resume."""
        raise NotImplementedError

    def cache_key(self, item: Any) -> Any:
        """Optional: what else exec's result on ``item`` depends on, for the cache (JSON
        data), beyond the node's code, params and the item: e.g. a model and its settings."""
        raise NotImplementedError

    def post_item(self, shared: Any, item: Any, result: Any) -> None:
        """Optional: called with each item's result (an ``ErrorRecord`` for one that failed
        under on_error="collect") as it lands, in the order they finish."""

    def run(self, shared: Any) -> Any:
        """Run this node alone (successors are not followed) through a default runner."""
        if self.successors:
            warnings.warn("Node won't run successors. Use Flow.", stacklevel=2)
        return engine().run(self, shared)

    def __rshift__(self, other: BaseNode) -> BaseNode:
        return self.next(other)

    def __sub__(self, action: str) -> _ConditionalTransition:
        if isinstance(action, str):
            return _ConditionalTransition(self, action)
        raise GraphError(
            f"{self.name}: action must be a string, got {type(action).__name__} {action!r}; "
            'write node - "action" >> other'
        )

    def __repr__(self) -> str:
        given = getattr(self, "_fk_name", None)
        return f"<{type(self).__name__}{f' {given!r}' if given else ''}>"


class _ConditionalTransition:
    def __init__(self, src: BaseNode, action: str) -> None:
        self.src, self.action = src, action

    def __rshift__(self, tgt: BaseNode) -> BaseNode:
        return self.src.next(tgt, self.action)


class Node(BaseNode):
    """A node with retries: ``max_retries`` tries in all, ``wait`` seconds apart."""

    def __init__(self, max_retries: int = 1, wait: float = 0, **options: Any) -> None:
        super().__init__(**options)
        self.max_retries, self.wait = max_retries, wait

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        raise exc


class BatchNode(Node):
    """Calls exec once per item that prep returns; one at a time unless an executor says so."""


class AsyncNode(Node):
    """A node whose hooks are coroutines: prep_async, exec_async, post_async."""

    async def prep_async(self, shared: Any) -> Any:
        pass

    async def exec_async(self, prep_res: Any) -> Any:
        pass

    async def exec_fallback_async(self, prep_res: Any, exc: Exception) -> Any:
        raise exc

    async def post_item_async(self, shared: Any, item: Any, result: Any) -> None:
        """Optional: the async ``post_item``."""

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        pass

    async def run_async(self, shared: Any) -> Any:
        """Run this node alone (successors are not followed)."""
        if self.successors:
            warnings.warn("Node won't run successors. Use AsyncFlow.", stacklevel=2)
        return await engine().run_async(self, shared)

    _noun = "node"

    def run(self, shared: Any) -> Any:
        raise UsageError(
            f"{self.name} is async: use `await {self._noun}.run_async(shared)` or "
            f"`flowkit.Runner().run({self._noun}, shared)`"
        )


class AsyncBatchNode(AsyncNode, BatchNode):
    """Awaits exec_async once per item, one item at a time."""


class AsyncParallelBatchNode(AsyncNode, BatchNode):
    """Runs exec_async for many items at once, at most ``max_concurrency`` in flight."""
