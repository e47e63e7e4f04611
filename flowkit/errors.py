"""flowkit's exception hierarchy: every error the framework raises derives from FlowkitError.

Exceptions raised by user code inside ``exec`` keep their own type; flowkit adds a note naming
the node and the item (PEP 678), so ``except ValueError`` in PocketFlow code still works.
"""

from __future__ import annotations

__all__ = [
    "BatchInputError",
    "BatchResultError",
    "BudgetSpentError",
    "BudgetStop",
    "CommandLoadError",
    "ConfigError",
    "FlowStructureError",
    "FlowkitError",
    "FlowkitWarning",
    "GraphError",
    "ItemTimeoutError",
    "MissingExtraError",
    "NotImplementedExecError",
    "OutputError",
    "PicklingError",
    "RemoteError",
    "StoreError",
    "TooManyErrorsError",
    "UnknownRunError",
    "UsageError",
    "WorkerCrashedError",
]


class FlowkitError(Exception):
    """Base class of every error raised by flowkit itself."""


class GraphError(FlowkitError, TypeError):
    """A flow is wired wrongly: a successor that is not a node, an action that is not a string."""


class ConfigError(FlowkitError, ValueError):
    """A setting is invalid: a limit, an executor name, a limiter name, a retry policy."""


class UsageError(FlowkitError, RuntimeError):
    """flowkit was called the wrong way: ``run`` on an async flow, or bad command-line input
    (a flow command may raise it too: exit status 2)."""


class FlowStructureError(FlowkitError):
    """A flow cannot run as built: no start node, or more transitions than ``max_steps``."""


class BatchInputError(FlowkitError, TypeError):
    """A batch node's or batch flow's prep returned something that is not an iterable."""


class NotImplementedExecError(FlowkitError, NotImplementedError):
    """The exec hook that the node's executor would run is not defined on the node."""


class PicklingError(FlowkitError):
    """A node, item or result cannot be pickled to travel to or from a worker process."""


class WorkerCrashedError(FlowkitError):
    """A worker process died (killed, segfault, out of memory) while running items."""


class RemoteError(FlowkitError):
    """An exception from a worker that could not be sent back as itself (not picklable)."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class TooManyErrorsError(FlowkitError):
    """A node with ``on_error="collect"`` failed on more items than its ``max_errors``."""


class ItemTimeoutError(FlowkitError, TimeoutError):
    """One try of exec on an item ran past the node's ``timeout``: retried under the node's
    retry policy like any failure. ``how`` says what became of the call (cancelled,
    abandoned in its thread, or its worker process killed and replaced)."""

    def __init__(self, node: str, seconds: float, how: str, attempt: int = 0) -> None:
        super().__init__(node, seconds, how)
        self.node, self.seconds, self.how, self.attempt = node, seconds, how, attempt
        self.index: int | None = None  # set by the runner, which knows the item's place

    def __str__(self) -> str:
        item = f"item {self.index}" if self.index is not None else "an item"
        try_ = f" (try {self.attempt + 1})" if self.attempt else ""
        return (
            f"{self.node}: exec on {item} ran past its timeout of {self.seconds:g} s{try_} "
            f"and was {self.how}; raise the node's timeout (timeout = SECONDS, or "
            f"Runner(timeouts={{{self.node!r}: SECONDS}})) or find what hangs"
        )


class BudgetStop(BaseException):
    """A budget is spent: no new call may start. Raised where a call would be admitted (a
    limiter's ``acquire``, a worker taking its next item); a ``BaseException``, so exec code
    that catches ``Exception`` lets it through. The run then lets its calls in flight finish
    and ends with the status "budget", raising ``BudgetSpentError``."""


class BudgetSpentError(FlowkitError):
    """The run stopped because a budget was spent (its status is "budget"): the calls in
    flight finished, no new one started. With a store, a resume with a larger budget
    continues from there (what was spent is stored with the run)."""


class BatchResultError(FlowkitError):
    """exec_batch returned something other than one result per item."""


class StoreError(FlowkitError):
    """The checkpoint store cannot be used: corrupt, foreign, newer schema, or bad data."""


class OutputError(FlowkitError, OSError):
    """An output file or folder cannot be written: a symbolic link, a folder where a file is
    expected, or no permission."""


class UnknownRunError(StoreError, KeyError):
    """The run id asked for is not in the store."""


class CommandLoadError(FlowkitError):
    """A registered flow command could not be imported or is not a FlowCommand."""


class PreParseError(Exception):
    """The CLI's lenient first parse (finding ``run``'s target) met an argument it cannot read;
    the real parse reports it."""


class FlowkitWarning(UserWarning):
    """Something in a run works against its parallelism, e.g. an exec that blocks the loop."""


class MissingExtraError(FlowkitError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def missing_extra(module: str, extra: str | None, purpose: str) -> MissingExtraError:
    """Build the error for a missing optional dependency (``extra`` None: no extra has it)."""
    fix = f"pip install 'flowkit[{extra}]'" if extra else f"pip install {module}"
    return MissingExtraError(f"{purpose} needs the '{module}' package: {fix}")
