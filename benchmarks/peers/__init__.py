"""One module per framework, each running the workloads of ``peers.py`` its documented way.

Every peer module offers the same functions (see ``work.Peer``); ``cell.py`` runs one of them
in a fresh process so a slow peer can be stopped and its peak RSS read on its own.
"""

PEERS = ("flowkit", "pocketflow", "asyncio", "langgraph", "prefect", "ray")
"""Peer names, in table order; ``peers.with_<name>`` is each one's module."""
