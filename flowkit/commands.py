"""Named flows for the command line: ``flowkit run NAME`` builds, runs and finishes them.

A flow package makes itself runnable by name with a ``FlowCommand`` registered under the
``flowkit.flows`` entry-point group (the class, an instance, or a zero-argument factory), so
the core never imports ``flows/``::

    [project.entry-points."flowkit.flows"]
    translation = "flows.translation.cli:TranslationCommand"
"""

from __future__ import annotations

import argparse
import codecs
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from flowkit.errors import CommandLoadError, OutputError, UsageError
from flowkit.extras import as_missing_extra
from flowkit.files import check_target, ensure_dir
from flowkit.limits import Limit
from flowkit.node import BaseNode
from flowkit.results import RunInfo

GROUP = "flowkit.flows"
OUT_ROOT = "flowkit-out"
"""Where ``flowkit run NAME`` writes a run's outputs and report unless told otherwise:
``flowkit-out/NAME/RUN_ID/``."""


class FlowCommand(ABC):
    """A flow that ``flowkit run NAME`` can build from its arguments, run, and finish.

    ``flowkit run`` already offers ``--shared``, ``--limit``, ``--executor``, ``--report`` and
    ``--no-progress``; a bare ``--limit N`` lands in ``args.limit_items`` (None when absent)
    for the command to use, e.g. "only the first N tasks", and ``--limit LIMITER=N`` caps
    the concurrency of a limiter from ``limits``; a bare ``--executor KIND`` lands in
    ``args.executor_kind``.

    Every run leaves something to look at: ``args.out_dir`` is this run's own folder
    (``flowkit-out/NAME/RUN_ID``), where a command writes its outputs and its report
    (``args.report``) unless its options say otherwise. ``build`` checks every place it will
    write (``output_dir``, ``output_file``) so that a bad one is refused before any work
    starts, and leaves in ``args.out_dir`` where the outputs went (a folder or a file): the
    run's last line names it, after the report's page.
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
        options.report = None
        options.out_dir = Path(OUT_ROOT) / self.name / "graph"
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

    def rejected(self, args: argparse.Namespace, shared: Any) -> int:
        """Inputs refused before they became items (unknown or malformed): each one makes
        the run failed, and the last line counts them."""
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


def non_negative_number(text: str) -> float:
    """An argparse type for flow options: a finite number of at least 0 (a delay, say)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}")
    return value


def text_file(path: str | os.PathLike[str], option: str) -> Path:
    """``path``, once it is known to be a readable UTF-8 text file; else a ``UsageError``
    naming ``option`` and what is wrong. Reads the file in chunks, keeping none of it."""
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"{option}: cannot read {file}: it is a folder, not a file")
    if not file.is_file():
        raise UsageError(f"{option}: cannot read {file}: no such file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    at = offset - (len(exc.object) - len(chunk)) + exc.start
                    raise UsageError(_not_utf8(file, option, at, exc)) from None
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # a sequence cut short at the end of the file
        at = offset - len(exc.object) + exc.start
        raise UsageError(_not_utf8(file, option, at, exc)) from None
    return file


def read_text_file(path: str | os.PathLike[str], option: str) -> str:
    """The text of a UTF-8 file, or a one-line ``UsageError`` naming ``option``."""
    file = Path(path)
    try:
        return file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{option}: cannot read {file}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{option}: cannot read {file}: it is a folder, not a file") from None
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(_not_utf8(file, option, exc.start, exc)) from None


def _not_utf8(file: Path, option: str, at: int, exc: UnicodeDecodeError) -> str:
    byte = f"byte 0x{exc.object[exc.start]:02x}" if exc.start < len(exc.object) else "a cut"
    return (
        f"{option}: {file} is not UTF-8 text ({byte} at offset {at:,}); save it as UTF-8 "
        "and try again"
    )


def output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Create the output folder ``path`` now, or refuse it (a link, a file, no permission)
    with a ``UsageError`` naming ``option``, before any work starts."""
    try:
        return ensure_dir(path)
    except OutputError as exc:
        raise UsageError(f"{option}: {exc}") from None


def output_file(path: str | os.PathLike[str], option: str) -> Path:
    """Check now that ``path`` can be written later (its folder is created), or refuse it
    with a ``UsageError`` naming ``option``."""
    try:
        return check_target(path)
    except OutputError as exc:
        raise UsageError(f"{option}: {exc}") from None
