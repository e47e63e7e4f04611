"""The ``flowkit`` command: run a flow, list the bundled ones, draw a graph, render a report.

Exit codes: 0 ok, 1 the run failed, 2 bad usage (unknown flow or option, bad ``--limit``
syntax, a missing file). A flow is a bundled NAME (``flowkit list``) or ``MODULE:ATTR``
naming a flow or node, or a zero-argument factory returning one; the current directory is
importable. Everything printed about errors goes through ``flowkit.redact``.
"""

from __future__ import annotations

from flowkit.cli.app import main
from flowkit.cli.targets import DEFAULT_STORE, FAILED, OK, USAGE, load_target, set_executor

__all__ = ["DEFAULT_STORE", "FAILED", "OK", "USAGE", "load_target", "main", "set_executor"]
