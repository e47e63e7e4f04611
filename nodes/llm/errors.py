"""Errors of the LLM layer; all derive from ``flowkit.errors.FlowkitError``.

A call that fails for good raises an ``LLMCallError`` whose message names the node (or
client) that made it, the model, and how many attempts were spent.
"""

from __future__ import annotations

from flowkit.errors import ConfigError, FlowkitError
from flowkit.limits import Quota
from flowkit.redact import redact


class LLMError(FlowkitError):
    """Base class of every error raised by ``nodes.llm``."""


class LLMConfigError(LLMError, ConfigError):
    """The LLM settings cannot work, e.g. the OpenAI provider without an API key."""


class LLMCallError(LLMError):
    """One LLM call failed for good.

    ``owner`` (the node's name) and ``attempts`` are filled in by the client that made the
    call, so the message says who failed and after how many tries. ``detail`` is redacted
    (``flowkit.redact``): a server that echoes the API key in its error body does not put
    the key in the message.
    """

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        detail = redact(detail)
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.owner: str | None = None
        self.attempts = 1

    def __str__(self) -> str:
        who = f"{self.owner}: " if self.owner else ""
        tries = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{who}{self.detail}{tries}"


class TransientLLMError(LLMCallError):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds, if any."""


class LLMRateLimitError(TransientLLMError):
    """The provider refused the call for its rate limits (HTTP 429); ``quotas``: the request
    and token limits it stated on the refusal, if any (``flowkit.Quota``)."""

    def __init__(
        self,
        detail: str,
        *,
        retry_after: float | None = None,
        quotas: tuple[Quota | None, Quota | None] = (None, None),
    ) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.quotas = quotas


class LLMServerError(TransientLLMError):
    """The provider failed with an HTTP 5xx."""


class LLMTimeoutError(TransientLLMError):
    """No reply within the settings' ``timeout``."""


class LLMConnectionError(TransientLLMError):
    """The provider could not be reached."""


class LLMRequestError(LLMCallError):
    """The provider rejected the request itself (HTTP 4xx other than 429); not retried."""


class MalformedReplyError(LLMCallError):
    """The reply could not be read: a body that is not JSON, or no message in it."""


class TruncatedReplyError(LLMCallError):
    """The reply stopped at ``max_tokens``; its text is incomplete."""


class StructuredOutputError(LLMCallError):
    """The reply still did not validate against the requested model after every re-ask."""
