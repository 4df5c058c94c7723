"""The fake's "model": scripted or default answers, thinking traces, truncation to num_ctx, real-model mode."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.servers.ollama.wire import (
    CHARS_PER_TOKEN,
    ENGINE_DEFAULT_PREDICT,
    HARMONY_FAMILIES,
    MESSAGE_OVERHEAD_TOKENS,
    THINKING_TEXT,
    HttpError,
    Job,
    ModelSpec,
    Result,
    estimate_tokens,
    example,
    full_name,
)

if TYPE_CHECKING:
    from ollama_dist.backends.embedded import LocalModel


class Generation:
    """The generating half of :class:`~tests.servers.ollama.FakeOllama` (a mixin).

    With ``engine`` (an ``ollama_dist.backends.embedded.LocalModel``) unscripted answers and
    token counts come from the real model.
    """

    engine: LocalModel | None
    always_stop: bool
    reloads: int
    models: dict[str, ModelSpec]
    _cv: threading.Condition
    _scripts: dict[str | None, deque[str] | Callable[[dict[str, Any]], str]]
    default_context: Callable[[str], int]  # ModelState's
    _loaded_context: Callable[[str], int | None]  # ModelState's

    def _count(self, text: str) -> int:
        return self.engine.count_tokens(text) if self.engine is not None else estimate_tokens(text)

    def _fit(self, messages: list[dict[str, str]], num_ctx: int, num_keep: int) -> tuple[list[dict[str, str]], int]:
        """What the real server does with a prompt over num_ctx (A.8): drop whole messages
        from the front, keeping system messages and the latest; then clip tokens."""
        costs = [self._count(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages]
        total = 0
        for start in range(len(messages)):
            keep = [i for i in range(len(messages)) if i >= start or messages[i]["role"] == "system"]
            total = sum(costs[i] for i in keep)
            if total <= num_ctx:
                return [messages[i] for i in keep], total
        kept = [m for i, m in enumerate(messages) if m["role"] == "system" or i == len(messages) - 1]
        if self.engine is not None:
            last = kept[-1]
            room = num_ctx - (total - costs[-1]) - MESSAGE_OVERHEAD_TOKENS
            tail = max(room - num_keep, 1)
            kept[-1] = {"role": last["role"], "content": self.engine.clip_tokens(last["content"], num_keep, tail)}
        return kept, num_ctx

    def _answer(self, job: Job, name: str) -> str | None:
        with self._cv:
            script = self._scripts.get(name, self._scripts.get(None))
            if isinstance(script, deque) and script:
                return script.popleft()
        if callable(script):
            return script(job.body)
        return None

    def _thinking(self, job: Job, name: str) -> str:
        """The trace a thinking model shows for `job` ("" for none); a 400 for a `think` it does not take."""
        spec = self.models[name]
        think = job.body.get("think")
        if think is not None and spec.rejects_think:
            raise HttpError(400, f"think value {json.dumps(think)} is not supported for this model")
        if not spec.thinks:
            if think is True or isinstance(think, str):
                raise HttpError(400, f"{json.dumps(job.model)} does not support thinking")
            return ""
        if think is False and spec.family not in HARMONY_FAMILIES:  # gpt-oss ignores booleans
            return ""
        return THINKING_TEXT

    def _generate(self, job: Job, stop: threading.Event | None = None) -> Result:
        """One answer; `stop` (set when the client goes away) ends a real-model generation early."""
        started = time.perf_counter()
        name = full_name(job.model)
        num_ctx = int(job.options.get("num_ctx") or self.default_context(name))
        loaded = self._loaded_context(name)
        was_loaded = loaded == num_ctx
        if loaded is not None and not was_loaded:
            with self._cv:
                self.reloads += 1  # a different num_ctx: the runner starts again
        num_predict = int(job.options.get("num_predict", -1))
        messages, prompt_tokens = self._fit(job.messages, num_ctx, int(job.options.get("num_keep", 4)))
        thinking = self._thinking(job, name) if job.endpoint != "openai" else ""
        text = self._answer(job, name)
        if text is None and self.engine is not None:
            return self._engine_generate(job, messages, num_ctx, num_predict, was_loaded, started, stop)
        if text is None:
            if isinstance(job.fmt, dict):
                text = json.dumps(example(job.fmt))
            elif job.fmt == "json":
                text = json.dumps({"answer": "ok"})
            else:
                text = "This is a fake answer from the test server."
        thought = estimate_tokens(thinking)
        eval_count, reason = thought + estimate_tokens(text), "stop"
        if 0 < num_predict < eval_count:  # the trace counts against num_predict too
            room = max(num_predict - thought, 0)
            thinking = thinking[: num_predict * CHARS_PER_TOKEN]
            text, eval_count, reason = text[: room * CHARS_PER_TOKEN], num_predict, "length"
        if self.always_stop:
            reason = "stop"  # as some servers say, cut off or not
        load_ns = 0 if was_loaded else 250_000_000
        return Result(text, prompt_tokens, eval_count, reason, num_ctx, load_ns, started, thinking=thinking)

    def _engine_generate(
        self,
        job: Job,
        messages: list[dict[str, str]],
        num_ctx: int,
        num_predict: int,
        was_loaded: bool,
        started: float,
        stop: threading.Event | None = None,
    ) -> Result:
        assert self.engine is not None
        max_tokens = num_predict if num_predict > 0 else ENGINE_DEFAULT_PREDICT
        from ollama_dist.errors import OllamaDistError

        run_started = time.perf_counter()
        try:
            out = self.engine.chat(
                messages,
                max_tokens=max_tokens,
                temperature=float(job.options.get("temperature", 0.8)),
                schema=job.fmt if isinstance(job.fmt, dict) else None,
                json_mode=job.fmt == "json",
                n_ctx=num_ctx + max_tokens + 64,
                seed=int(job.options["seed"]) if job.options.get("seed") is not None else None,
                stop=stop,
            )
        except OllamaDistError as exc:
            raise HttpError(500, exc.message) from exc
        reason = "length" if out.finish_reason == "length" else "stop"
        load_ns = 0 if was_loaded else int(self.engine.load_seconds * 1e9)
        run_ns = int((time.perf_counter() - run_started) * 1e9)
        return Result(out.text, out.prompt_tokens, out.completion_tokens, reason, num_ctx, load_ns, started, run_ns)
