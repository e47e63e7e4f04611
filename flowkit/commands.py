"""Named flows for the command line: ``flowkit run NAME`` builds, runs and finishes them.

A flow package makes itself runnable by name with a ``FlowCommand`` registered under the
``flowkit.flows`` entry-point group (the class, an instance, or a zero-argument factory), so
the core never imports ``flows/``::

    [project.entry-points."flowkit.flows"]
    translation = "flows.translation.cli:TranslationCommand"
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from flowkit.errors import CommandLoadError, UsageError
from flowkit.extras import as_missing_extra
from flowkit.limits import Limit
from flowkit.node import BaseNode
from flowkit.results import RunInfo

GROUP = "flowkit.flows"


class FlowCommand(ABC):
    """A flow that ``flowkit run NAME`` can build from its arguments, run, and finish.

    ``flowkit run`` already offers ``--shared``, ``--limit``, ``--executor``, ``--report`` and
    ``--no-progress``; a bare ``--limit N`` lands in ``args.limit_items`` (None when absent)
    for the command to use, e.g. "only the first N tasks", and ``--limit LIMITER=N`` caps
    the concurrency of a limiter from ``limits``; a bare ``--executor KIND`` lands in
    ``args.executor_kind``.
    """

    name: str = ""
    """What users type after ``flowkit run``."""
    description: str = ""
    """One line for ``flowkit list``."""
    extra: str | None = None
    """The flowkit extra the flow needs (named when one of its packages is missing)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027 (optional)
        """Add this flow's own options to ``flowkit run NAME`` (not ``--limit``: see above)."""

    @abstractmethod
    def build(self, args: argparse.Namespace) -> tuple[BaseNode, Any]:
        """Return the flow to run and its initial ``shared`` store."""

    def graph(self) -> BaseNode:
        """The flow as ``flowkit graph NAME`` draws it; by default ``build`` with every option
        at its default. Override it when ``build`` needs options or loads data."""
        parser = argparse.ArgumentParser(prog=f"flowkit graph {self.name}")
        self.add_arguments(parser)
        try:
            options = parser.parse_args([])
        except SystemExit:
            raise UsageError(
                f"flowkit graph {self.name}: the flow needs options to be built; its command "
                "should override FlowCommand.graph()"
            ) from None
        options.limit_items = None
        options.executor_kind = None
        return self.build(options)[0]

    def runner_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """Extra ``Runner`` keywords for this flow (e.g. ``ray_address``)."""
        return {}

    def limits(self, args: argparse.Namespace) -> dict[str, Limit]:
        """The named limiters the flow's nodes use (an API's rate limits, say)."""
        return {}

    def finish(self, args: argparse.Namespace, shared: Any, run_info: RunInfo) -> int:
        """After a run that did not raise: print the summary, write outputs, return the exit
        code (0 ok, 1 failed)."""
        return 0


class Registry:
    """Flow commands by name: given directly, or found lazily through entry points."""

    def __init__(
        self, commands: Iterable[FlowCommand] = (), *, entry_points: Iterable[EntryPoint] = ()
    ) -> None:
        self._commands = {command.name: command for command in commands}
        self._entry_points = {ep.name: ep for ep in entry_points}

    @classmethod
    def discover(cls) -> Registry:
        """The commands installed packages register under the ``flowkit.flows`` group."""
        return cls(entry_points=entry_points(group=GROUP))

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(set(self._commands) | set(self._entry_points))

    def __contains__(self, name: object) -> bool:
        return name in self._commands or name in self._entry_points

    def extra(self, name: str) -> str | None:
        """The extra a registered flow needs, from its entry point (``module:attr [extra]``)."""
        command = self._commands.get(name)
        if command is not None and command.extra:
            return command.extra
        ep = self._entry_points.get(name)
        return ep.extras[0] if ep is not None and ep.extras else None

    def get(self, name: str) -> FlowCommand:
        """The command registered as ``name``, importing it on first use."""
        command = self._commands.get(name)
        if command is not None:
            return command
        ep = self._entry_points[name]
        try:
            loaded = ep.load()
            command = loaded() if callable(loaded) else loaded
        except Exception as exc:
            missing = as_missing_extra(exc, self.extra(name), f"flowkit run {name}")
            if missing is not None:
                raise missing from exc
            raise CommandLoadError(
                f"flow {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(command, FlowCommand):
            raise CommandLoadError(
                f"flow {name!r} ({ep.value}) is a {type(command).__name__}, not a FlowCommand"
            )
        self._commands[name] = command
        return command


def positive_int(text: str) -> int:
    """An argparse type for flow options: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def positive_number(text: str) -> float:
    """An argparse type for flow options: a finite number above 0 (a rate, say)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
