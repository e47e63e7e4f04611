"""The ``flowkit`` command: run a flow, list the bundled ones, draw a graph, render a report.

Exit codes: 0 ok, 1 the run failed (failed items, or inputs a bundled flow refused), 2 bad
usage (unknown flow or option, a bad setting or wiring, a file that cannot be read, a place
that cannot be written: all found before any work starts, each said in one line), 3 a budget
was spent (``--max-cost``, ``--max-calls``, ``--max-tokens``: no new call started, the calls
in flight finished; with a store, ``--resume RUN_ID`` with a larger budget continues), 130
interrupted (Ctrl-C or SIGTERM: the last line gives the command that resumes it), 141 when
stdout's reader went away (``| head``). A flow is a bundled NAME (``flowkit list``), or
``MODULE:ATTR`` or ``path/to/file.py:ATTR`` naming a flow or node, or a zero-argument factory
returning one; the current directory is importable. A bundled flow writes its outputs and
report into ``flowkit-out/NAME/RUN_ID/`` unless told otherwise, and its last line names that
folder. Everything printed about errors goes through ``flowkit.redact``.
"""

from __future__ import annotations

from flowkit.cli.app import main
from flowkit.cli.targets import (
    BUDGET,
    DEFAULT_CACHE,
    DEFAULT_STORE,
    FAILED,
    INTERRUPTED,
    OK,
    USAGE,
    load_target,
    set_executor,
)

__all__ = [
    "BUDGET",
    "DEFAULT_CACHE",
    "DEFAULT_STORE",
    "FAILED",
    "INTERRUPTED",
    "OK",
    "USAGE",
    "load_target",
    "main",
    "set_executor",
]
