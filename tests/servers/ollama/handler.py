"""The HTTP plumbing of the fake Ollama server: the threaded server, the handler, bodies and streams."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.servers.ollama.server import FakeOllama


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a benchmark opens hundreds of connections at once
    fake: FakeOllama


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server
    server_version = "FakeOllama"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET")

    def do_HEAD(self) -> None:
        self.server.fake._dispatch(self, "HEAD")

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._dispatch(self, "DELETE")


def send(h: Handler, status: int, body: bytes, content_type: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def send_json(h: Handler, status: int, obj: Any) -> None:
    send(h, status, json.dumps(obj).encode(), "application/json; charset=utf-8")


def start_stream(h: Handler, content_type: str) -> None:
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()


def write_chunk(h: Handler, data: bytes) -> None:
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()


def end_stream(h: Handler) -> None:
    h.wfile.write(b"0\r\n\r\n")
    h.wfile.flush()


def client_gone(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@contextlib.contextmanager
def watching_client(h: Handler) -> Iterator[threading.Event]:
    """An event set once the client closes its connection while its answer is made (the real
    server's request context is cancelled then, and the generation stops with it)."""
    gone, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            if client_gone(h.connection):
                gone.set()
                return

    watcher = threading.Thread(target=watch, name="fake-ollama-client-watch", daemon=True)
    watcher.start()
    try:
        yield gone
    finally:
        done.set()
        watcher.join()
