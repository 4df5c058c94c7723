"""``python -m tests.servers.anthropic --port 8765 --key test-key``: the fake Anthropic API by hand."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from tests.servers.anthropic.handler import Handler
from tests.servers.anthropic.server import AnthropicServer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Anthropic API for local tests and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--key", default="test-key", help="the API key clients must send")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--batch-polls", type=int, default=1, help="retrievals a batch stays in_progress")
    parser.add_argument("-v", "--verbose", action="store_true", help="log request lines to stderr")
    args = parser.parse_args(argv)
    Handler.verbose = args.verbose
    server = AnthropicServer(
        args.key, host=args.host, port=args.port, latency=args.latency, batch_polls=args.batch_polls
    )
    with server:
        print(f"fake Anthropic API at {server.url}  (ANTHROPIC_BASE_URL={server.url})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
