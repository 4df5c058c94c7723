"""``python -m tests.servers.ollama --port 11434 [--real-model]``: the fake Ollama server by hand."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

from tests.servers.ollama.server import FakeOllama


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Ollama server (tests and demos).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", dest="models", help="a model to serve (repeatable)")
    parser.add_argument("--real-model", action="store_true", help="answer with Gemma 3 270M via llama.cpp")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each generation takes")
    parser.add_argument("--num-parallel", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=512)
    args = parser.parse_args(argv)
    engine = None
    if args.real_model:
        from ollama_dist.backends.embedded import LocalModel

        engine = LocalModel()
        engine.load()
    server = FakeOllama(
        args.models or ("gemma3:270m",),
        host=args.host,
        port=args.port,
        num_parallel=args.num_parallel,
        max_queue=args.max_queue,
        latency_s=args.latency,
        engine=engine,
    )
    with server:
        print(f"fake Ollama listening on {server.url} (models: {', '.join(server.models)})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
