"""Where the benchmark scripts leave their figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(path: str | Path, results: Any) -> None:
    """Write ``results`` as indented JSON to ``path`` (folders made as needed) and say so."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
