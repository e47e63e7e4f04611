"""``flowkit cache ls|clear``: the cache of results that ``flowkit run --cache`` keeps."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from flowkit.cli.targets import OK, usable
from flowkit.commands import FlowCommand, Registry
from flowkit.errors import UsageError
from flowkit.store.cache import ResultCache


@contextlib.contextmanager
def opened(path: str, *, readonly: bool) -> Iterator[ResultCache]:
    """The cache at ``path``; a missing or unusable one is a one-line usage error."""
    if not Path(path).is_file():
        raise UsageError(f"no cache at {path}; pass --cache PATH")
    with usable(lambda: ResultCache(path, readonly=readonly)) as cache:
        yield cache


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def list_cache(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    from rich.console import Console
    from rich.table import Table

    with opened(args.cache, readonly=True) as cache:
        rows = cache.summary()
    now = time.time()
    table = Table("node", "entries", "size", "newest", "oldest", title=f"cache {args.cache}")
    for row in rows:
        table.add_row(
            row.node,
            f"{row.entries:,}",
            f"{row.bytes / 1024:,.1f} KiB",
            f"{_age(now - row.newest)} ago",
            f"{_age(now - row.oldest)} ago",
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    total = sum(r.entries for r in rows)
    print(f"{total:,} entr{'y' if total == 1 else 'ies'} for {len(rows)} node(s)")
    return OK


def clear_cache(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    with opened(args.cache, readonly=False) as cache:
        if args.node:
            known = {row.node for row in cache.summary()}
            missing = sorted(set(args.node) - known)
            if missing:
                raise UsageError(
                    f"--node: no entries of {', '.join(map(repr, missing))} in {args.cache}; "
                    f"nodes there: {', '.join(sorted(known)) or 'none'}"
                )
        removed = cache.clear(args.node, args.older_than)
    print(f"removed {removed:,} entr{'y' if removed == 1 else 'ies'} from {args.cache}")
    return OK
