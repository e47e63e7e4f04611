"""flowkit's exception hierarchy: every error the framework raises derives from FlowkitError.

Exceptions raised by user code inside ``exec`` keep their own type; flowkit adds a note naming
the node and the item (PEP 678), so ``except ValueError`` in PocketFlow code still works.
"""

from __future__ import annotations

__all__ = [
    "BatchInputError",
    "BatchResultError",
    "CommandLoadError",
    "ConfigError",
    "FlowStructureError",
    "FlowkitError",
    "FlowkitWarning",
    "GraphError",
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
