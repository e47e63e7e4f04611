"""A local OpenAI-compatible server for tests and dry runs, with latency, faults and limits.

In-process (sync or async tests)::

    with LLMServer(ServerConfig(latency_ms=200, rpm=60)) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        ...
        server.configure(next_faults=["429", "500"])
        assert server.stats.peak_in_flight <= 4

With pytest, enable ``nodes.llm.testing.pytest_plugin`` for the ``llm_server`` fixture.
From a shell: ``python -m nodes.llm.testing.server --port 8000 --latency-ms 50``.
"""

from nodes.llm.testing.completions import Responder, default_responder
from nodes.llm.testing.config import Fault, ServerConfig
from nodes.llm.testing.llm_server import LLMServer
from nodes.llm.testing.stats import RequestRecord, StatsSnapshot

__all__ = [
    "Fault",
    "LLMServer",
    "RequestRecord",
    "Responder",
    "ServerConfig",
    "StatsSnapshot",
    "default_responder",
]
