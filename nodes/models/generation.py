"""Batched text generation with a Hugging Face causal language model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowkit.errors import ConfigError
from flowkit.limits import check_limit
from nodes.models._runtime import check_installed, load_once, require

PURPOSE = "Generating text with transformers"
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TextGenerator:
    """Completes prompts with a causal LM, one left-padded ``generate`` call per batch.

    Decoder-only models continue from the last position of each row, so a batch is padded on
    the left: every prompt then ends where generation starts, and a batch gives the same
    greedy completions as one call per prompt. ``model`` is a local directory or a model
    already in the Hugging Face cache (nothing is downloaded); it is loaded on first use in
    each process, on ``device`` ("cpu", "cuda:0"...) in ``dtype`` ("auto": float32 on CPU,
    bfloat16 or float16 on a GPU). ``temperature`` 0 decodes greedily; above 0 it samples.
    """

    model: str
    device: str = "cpu"
    dtype: str = "auto"
    max_new_tokens: int = 32
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"TextGenerator dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        check_limit(self.max_new_tokens, "TextGenerator max_new_tokens")
        if not isinstance(self.temperature, int | float) or self.temperature < 0:
            raise ConfigError(
                f"TextGenerator temperature must be a number >= 0, got {self.temperature!r}"
            )
        check_installed(PURPOSE, "torch", "transformers")

    def on(self, device: str) -> TextGenerator:
        """The same generator on another device (a ``ReplicaPool`` factory)."""
        return dataclasses.replace(self, device=device)

    def load(self) -> tuple[Any, Any]:
        """``(tokenizer, model)``, loaded in this process on first use."""
        return load_once(("causal-lm", self.model, self.device, self.dtype), self._load)

    def _load(self) -> tuple[Any, Any]:
        torch = require(PURPOSE, "torch")
        transformers = require(PURPOSE, "transformers")
        from packaging.version import Version

        tokenizer = transformers.AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        dtype = self.dtype
        if dtype == "auto":
            on_gpu = self.device.startswith("cuda")
            dtype = "float32"
            if on_gpu:
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        # transformers 4.56 renamed torch_dtype to dtype
        new = Version(transformers.__version__) >= Version("4.56")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            self.model,
            local_files_only=True,
            **{"dtype" if new else "torch_dtype": getattr(torch, dtype)},
        )
        return tokenizer, model.to(self.device).eval()

    def __call__(self, prompts: Sequence[str]) -> list[str]:
        """One completion per prompt, in order (the prompt itself is not repeated)."""
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"TextGenerator: prompts must be str, got {type(prompt).__name__}")
        if not prompts:
            return []
        torch = require(PURPOSE, "torch")
        tokenizer, model = self.load()
        batch = tokenizer(
            list(prompts), return_tensors="pt", padding=True, return_token_type_ids=False
        ).to(model.device)
        sampling: dict[str, Any] = {"do_sample": self.temperature > 0}
        if self.temperature > 0:
            sampling["temperature"] = self.temperature
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        return list(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
