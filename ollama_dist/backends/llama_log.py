"""llama.cpp's native log, kept off stderr: a process-wide callback (see `NativeLog`)."""

from __future__ import annotations

import collections
import ctypes
import functools
import logging
from typing import Any


class NativeLog:
    """llama.cpp's log, process-wide: every line to the `ollama_dist.llama_cpp` logger at DEBUG,
    the last error lines kept for the message of a failed load. Made once (`native_log()`):
    `llama_log_set` is process-wide and the C side keeps calling the callback it was given."""

    GGML_ERROR, GGML_CONT = 4, 5  # ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5

    def __init__(self) -> None:
        import llama_cpp

        self.logger = logging.getLogger("ollama_dist.llama_cpp")
        self.errors: collections.deque[str] = collections.deque(maxlen=4)
        self._last_level = 0
        self._callback = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user_data: Any) -> None:
        line = text.decode("utf-8", errors="replace").rstrip("\n")
        level = self._last_level if level == self.GGML_CONT else level
        self._last_level = level
        if level == self.GGML_ERROR and line.strip():
            self.errors.append(line.strip())
        self.logger.debug("%s", line)

    def last_errors(self) -> str:
        text = "; ".join(self.errors)
        self.errors.clear()
        return f" ({text})" if text else ""


@functools.cache
def native_log() -> NativeLog:
    """The process's one `NativeLog` (it imports llama_cpp: call it where the model loads)."""
    return NativeLog()
