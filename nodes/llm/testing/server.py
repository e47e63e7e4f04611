"""Command line: ``python -m nodes.llm.testing.server`` serves until Ctrl-C.

Prints the base URL (``http://127.0.0.1:8000/v1``) on stdout; see ``--help`` for settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from pydantic import ValidationError

from nodes.llm.testing.config import ServerConfig
from nodes.llm.testing.llm_server import LLMServer


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nodes.llm.testing.server",
        description="Serve a fake OpenAI-compatible API for tests and dry runs until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (8000)")
    numeric: dict[str, type] = {
        "latency_ms": float,
        "latency_max_ms": float,
        "seed": int,
        "fail_rate_429": float,
        "fail_rate_500": float,
        "stall_rate": float,
        "malformed_rate": float,
        "retry_after_s": float,
        "stall_s": float,
        "rpm": int,
        "tpm": int,
        "rpm_window_s": float,
        "max_in_flight": int,
    }
    fields = ServerConfig.model_fields
    for name, kind in numeric.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, help=fields[name].description)
    parser.add_argument(
        "--model", dest="models", action="append", help="model id to list (repeatable)"
    )
    parser.add_argument(
        "--no-rate-headers",
        dest="rate_headers",
        action="store_false",
        default=None,
        help="do not state the rpm and tpm limits in x-ratelimit-* headers",
    )
    return parser


async def _serve_forever(server: LLMServer) -> None:
    async with server:
        print(server.base_url, flush=True)
        print("Ctrl-C stops the server.", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = vars(parser.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    try:
        config = ServerConfig(**{k: v for k, v in args.items() if v is not None})
    except ValidationError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(LLMServer(config, host=host, port=port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
