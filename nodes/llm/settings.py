"""LLM settings: provider, model, endpoint and call policy, with defaults from the environment.

``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` fill ``api_key`` and ``base_url`` when they are not
given; ``FLOWKIT_LLM_PROVIDER`` and ``FLOWKIT_LLM_MODEL`` fill ``provider`` and ``model``;
``FLOWKIT_LLM_PRICES`` (``MODEL=IN,OUT;...``, dollars per million prompt and completion
tokens) fills ``prices``.
With no key and no base URL anywhere, the provider is the offline simulated one, and a
one-line notice says so (once per process), so every flow runs on a fresh machine.

The API key counts as a secret for ``flowkit.redact`` from the moment settings hold it,
whatever its source. A base URL's credentials (``http://user:password@host/v1``) are taken out
of the URL and never sent: OpenAI-compatible servers take the key as a Bearer token
(``api_key``), and HTTP Basic credentials from a URL would go to every host the client is
redirected to. The password counts as a secret too, and a one-line warning says the
credentials were dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from flowkit.redact import add_secret, split_credentials
from flowkit.retry import Retry
from nodes.llm.errors import LLMConfigError, TransientLLMError

ProviderName = Literal["openai", "simulated"]
Price = tuple[str, float, float]
"""A model's price: its name, then dollars per million prompt and per million completion
tokens."""
DEFAULT_LIMITER = "llm"
"""The runner limiter LLM calls draw on unless the settings name another."""

log = logging.getLogger("nodes.llm")
_noticed = False
_warned: set[str] = set()


class Simulation(BaseModel):
    """How the simulated provider behaves: seeded latency and fault rates.

    Latency is drawn uniformly from ``latency_s..latency_max_s`` (fixed when no maximum).
    Each try of a call fails with one of the faults with the given probability; a timeout
    fault costs the settings' full ``timeout``, as a real one would.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_s: float = Field(default=0.05, ge=0)
    latency_max_s: float | None = Field(default=None, ge=0)
    seed: int = 0
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    server_error_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float = Field(default=1.0, ge=0, description="Retry-After of simulated 429s")

    @model_validator(mode="after")
    def _check_ranges(self) -> Simulation:
        if self.latency_max_s is not None and self.latency_max_s < self.latency_s:
            raise ValueError("latency_max_s must be >= latency_s")
        if self.rate_limit_rate + self.server_error_rate + self.timeout_rate > 1:
            raise ValueError("fault rates must add up to at most 1")
        return self


class LLMSettings(BaseModel):
    """Which LLM to call and how: endpoint, sampling, limiter name, retries and re-asks.

    ``limiter`` names the runner's ``flowkit.Limit`` every call draws on (when the runner
    defines it). A call is tried up to ``max_attempts`` times on 429, 5xx, timeouts and
    connection errors, waiting ``backoff_s * 2**n`` (capped at ``max_backoff_s``) plus jitter,
    or the server's Retry-After when longer. Structured output is re-asked up to
    ``max_reasks`` times when the reply fails validation.

    ``prices`` maps model names to dollars per million prompt and completion tokens (given
    as ``{"gpt-4o-mini": (0.15, 0.6)}``); a priced call records its ``cost`` in the run's
    usage and charges it to the limiter's budgets (``flowkit.Limit(max_cost=...)``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: ProviderName = Field(
        default="openai",
        description="when not given: 'openai' with a key or base URL set, else 'simulated'",
    )
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout: float = Field(default=60.0, gt=0, description="seconds per try")
    temperature: float | None = Field(default=None, ge=0, le=2, description="None: the model's")
    max_tokens: int = Field(default=2048, ge=1)
    limiter: str = DEFAULT_LIMITER
    max_attempts: int = Field(default=5, ge=1)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    max_reasks: int = Field(default=2, ge=0)
    simulation: Simulation = Simulation()
    prices: tuple[Price, ...] = Field(
        default=(), description="per model: dollars per million prompt, completion tokens"
    )

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_prices(value)
        if isinstance(value, Mapping):
            out = []
            for model, price in value.items():
                if not isinstance(price, list | tuple) or len(price) != 2:
                    raise ValueError(f"price of {model!r} must be (in, out), got {price!r}")
                out.append((model, *price))
            return tuple(sorted(out))
        return value

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, value: tuple[Price, ...]) -> tuple[Price, ...]:
        for model, prompt, completion in value:
            if not (0 <= prompt < float("inf") and 0 <= completion < float("inf")):
                raise ValueError(f"prices of {model!r} must be numbers >= 0")
        return value

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Dollars for a call's tokens on ``model``; None when ``model`` has no price."""
        for name, prompt, completion in self.prices:
            if name == model:
                return (prompt_tokens * prompt + completion_tokens * completion) / 1e6
        return None

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        env = os.environ
        data = {
            "api_key": env.get("OPENAI_API_KEY") or None,
            "base_url": env.get("OPENAI_BASE_URL") or None,
            **data,
        }
        if "model" not in data and env.get("FLOWKIT_LLM_MODEL"):
            data["model"] = env["FLOWKIT_LLM_MODEL"]
        if "prices" not in data and env.get("FLOWKIT_LLM_PRICES"):
            data["prices"] = env["FLOWKIT_LLM_PRICES"]
        if data.get("provider") is None:
            data["provider"] = env.get("FLOWKIT_LLM_PROVIDER") or (
                "openai" if data["api_key"] or data["base_url"] else _fallback()
            )
        if isinstance(data.get("base_url"), str):
            data["base_url"] = _without_credentials(data["base_url"])
        return data

    @model_validator(mode="after")
    def _register_secret(self) -> LLMSettings:
        if self.api_key is not None:
            add_secret(self.api_key.get_secret_value())
        return self

    @property
    def retry(self) -> Retry:
        """The per-call retry policy (exponential backoff, jitter, Retry-After honoured)."""
        return Retry(
            attempts=self.max_attempts,
            initial=self.backoff_s,
            max_wait=self.max_backoff_s,
            jitter=self.backoff_s,
            retry_on=(TransientLLMError,),
        )

    def check(self) -> None:
        """Refuse settings that cannot make a call, before any work starts."""
        if self.provider == "openai" and not (self.api_key and self.api_key.get_secret_value()):
            raise LLMConfigError(
                "the 'openai' LLM provider needs an API key: set OPENAI_API_KEY (any non-empty "
                "value for a local server that ignores it) or give LLMSettings an api_key; or "
                "choose the 'simulated' provider to run offline"
            )


def parse_prices(text: str) -> tuple[Price, ...]:
    """``MODEL=IN,OUT;MODEL=IN,OUT`` (dollars per million prompt, completion tokens)."""
    out = []
    for part in text.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        model, eq, numbers = part.strip().rpartition("=")
        try:
            prompt, completion = (float(n) for n in numbers.split(","))
        except ValueError:
            prompt = completion = -1.0
        if not eq or not model or prompt < 0 or completion < 0:
            raise ValueError(
                f"prices: expected MODEL=IN,OUT (dollars per million prompt, completion "
                f"tokens), got {part.strip()!r}"
            )
        out.append((model, prompt, completion))
    return tuple(sorted(out))


def _without_credentials(url: str) -> str:
    """``url`` without ``user:password@``; the password becomes a secret, and a warning says
    the credentials are not sent."""
    bare, user, password = split_credentials(url)
    if user is None and password is None:
        return url
    add_secret(password)
    if bare in _warned:
        return bare
    _warned.add(bare)
    log.warning(
        "flowkit: the LLM base URL %s held credentials; they are not sent (put the API key in "
        "OPENAI_API_KEY or LLMSettings.api_key)",
        bare,
    )
    return bare


def _fallback() -> str:
    """The simulated provider, announced once per process."""
    global _noticed
    if not _noticed:
        _noticed = True
        log.warning(
            "flowkit: no OPENAI_API_KEY or OPENAI_BASE_URL set; LLM calls use the offline "
            "simulated provider (deterministic fake replies)"
        )
    return "simulated"
