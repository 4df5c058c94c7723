"""What the fake Ollama server holds between requests: loaded models (/api/ps), their context, the queue.

The default context follows Ollama 0.15.5+ (A.7): `default_num_ctx` when set (as
OLLAMA_CONTEXT_LENGTH), else the VRAM tier of `vram_gib`, capped by the model's trained
context. A request whose num_ctx differs from the loaded model's reloads it (`reloads`
counts them; the answer then has a load_duration again).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from tests.servers.ollama.handler import Handler, send_json
from tests.servers.ollama.wire import FOREVER, Job, ModelSpec, full_name, vram_num_ctx


class ModelState:
    """The loaded-models and queue half of :class:`~tests.servers.ollama.FakeOllama` (a mixin).

    ``num_parallel`` requests generate at once, up to ``max_queue`` wait, the rest get 503.
    """

    num_parallel: int
    max_queue: int
    max_active: int
    reloads: int
    default_num_ctx: int | None
    vram_gib: float
    models: dict[str, ModelSpec]
    _cv: threading.Condition
    _stopping: threading.Event
    _active: int
    _waiting: int
    _loaded: dict[str, tuple[int, datetime]]

    @property
    def loaded(self) -> dict[str, int]:
        with self._cv:
            return {name: ctx for name, (ctx, _) in self._live_models().items()}

    def default_context(self, model: str) -> int:
        """The num_ctx a request without options.num_ctx gets for `model`."""
        if self.default_num_ctx is not None:
            return self.default_num_ctx
        spec = self.models.get(full_name(model))
        tier = vram_num_ctx(self.vram_gib)
        return min(tier, spec.context_length) if spec is not None else tier

    def _loaded_context(self, model: str) -> int | None:
        with self._cv:
            found = self._live_models().get(full_name(model))
        return found[0] if found else None

    def _live_models(self) -> dict[str, tuple[int, datetime]]:
        now = datetime.now(UTC)
        self._loaded = {n: v for n, v in self._loaded.items() if v[1] > now}
        return self._loaded

    def _load_or_unload(self, h: Handler, job: Job) -> None:
        name = full_name(job.model)
        if job.keep_alive == 0:
            with self._cv:
                self._loaded.pop(name, None)
            reason = "unload"
        else:
            self._mark_loaded(job.model, int(job.options.get("num_ctx") or self.default_context(job.model)), job.keep_alive)
            reason = "load"
        chunk = self._chunk(job, "", done=True)
        chunk["done_reason"] = reason
        send_json(h, 200, chunk)

    def _admit(self) -> bool:
        with self._cv:
            if self._active >= self.num_parallel:
                if self._waiting >= self.max_queue:
                    return False
                self._waiting += 1
                while self._active >= self.num_parallel and not self._stopping.is_set():
                    self._cv.wait(0.1)
                self._waiting -= 1
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            return True

    def _release(self) -> None:
        with self._cv:
            self._active -= 1
            self._cv.notify()

    def _mark_loaded(self, model: str, num_ctx: int, keep_alive: float) -> None:
        name = full_name(model)
        with self._cv:
            if keep_alive == 0:
                self._loaded.pop(name, None)
            elif keep_alive < 0:
                self._loaded[name] = (num_ctx, FOREVER)
            else:
                self._loaded[name] = (num_ctx, datetime.now(UTC) + timedelta(seconds=keep_alive))
