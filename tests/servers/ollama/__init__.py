"""A protocol-faithful fake Ollama server on 127.0.0.1, for tests, benchmarks and demos.

Wire behaviour follows shared/PROTOCOLS.md A.1-A.8; deliberate simplifications are
listed at the end of this docstring.

Use:

    with FakeOllama() as srv:                     # or: async with FakeOllama() as srv
        srv.script(['{"city": "Lisbon"}'])       # answers, consumed in order
        ... talk to srv.url ...
        assert srv.requests[-1]["options"]["num_ctx"] == 8192

    python -m tests.servers.ollama --port 11434 [--real-model]     # by hand, for demos

`FakeOllama(models=("gemma3:270m",), *, port=0, num_parallel=1, max_queue=512,
latency_s=0.0, default_num_ctx=None, vram_gib=0.0, context_length=32768, engine=None,
version="0.15.5", broken_routes=None, always_stop=False, always_stream=False)`:
    models          names served (a bare name means name:latest); others get 404.
    num_parallel    requests generated at once (OLLAMA_NUM_PARALLEL); others wait.
    max_queue       waiting requests beyond which the server answers 503 (OLLAMA_MAX_QUEUE).
    latency_s       fixed time each generation takes, inside its slot (benchmarks).
    default_num_ctx context when a request has no options.num_ctx (as OLLAMA_CONTEXT_LENGTH);
                    None: the VRAM tier of `vram_gib` (A.7: 4096 below 23 GiB, 32768 from
                    23, 262144 from 47), capped by the model's trained context.
    context_length  trained context reported by /api/show for every model.
    broken_routes   {path: status}: that route answers `status` instead (404 is gin's
                    plain "404 page not found", as from a server without the route).
    always_stop     done_reason is "stop" even when num_predict cut the answer.
    always_stream   NDJSON chunks even for "stream": false (a shim that ignores it), so
                    a "midstream_error" fault is a 200 with an {"error"} line.
    engine          an `ollama_dist.backends.embedded.LocalModel`: answers (and token
                    counts) come from the real model unless a script says otherwise.

Attributes: `url` ("http://127.0.0.1:PORT"), `port`, `requests` (the JSON bodies of
generation requests, /api/chat, /api/generate and /v1/chat/completions, in arrival
order), `log` ((method, path) of every request), `max_active` (most generations seen
running at once), `loaded` ({model: num_ctx} as /api/ps reports it), `reloads` (how
often a request's num_ctx differed from the loaded model's, which reloads it: that
answer has a load_duration again).

Methods:
    start() / stop()  also via `with` / `async with`. After stop() the port is closed,
                      so connecting is refused; open keep-alive connections are cut.
    script(answers, *, model=None)
                      answers for `model` (None: any model): a list of strings consumed
                      in order (then the default answer), or a callable(body) -> str.
    fault(kind, *, model=None, times=1, seconds=30.0)
                      the next `times` generation requests (None: all) fail as `kind`:
                      "stall"    sleep `seconds` inside the slot before answering (ends
                                 early when the client hangs up or the server stops);
                      "http_500" 500 {"error": "llama runner process has terminated..."};
                      "not_json" 200 with an HTML body;
                      "midstream_error" streaming: one chunk then {"error": ...} in a 200;
                                 with "stream": false the real server's 500 + {"error"};
                      "busy"     503 with the exact queue-full body;
                      "disconnect" close the connection without answering.
    add_model(name, *, context_length=32768, family="gemma3", thinking=False, rejects_think=False)
                      serve one more model. `thinking`: it has the capability and, unless
                      the request says "think": false, puts a trace in message.thinking
                      (family "gptoss" ignores booleans: it always thinks). A model without
                      it answers 400 `"<model>" does not support thinking` to think: true or
                      a level; `rejects_think` answers 400 to any think field.
    reset()           forget requests, log, scripts, faults and loaded models.

Helpers: `fenced(value)` (JSON in a ```json fence), `chatty(value)` (JSON with prose
around it), `refused_url()` (a URL whose port refuses connections),
`estimate_tokens(text)` (the fake tokenizer).

Token counts without an engine: ceil(len(text) / 4) per text plus 4 per chat message
(the template's turn markers). With an engine, its own tokenizer.

Default answers (no script): a JSON instance of the schema when `format` is a schema,
`{"answer": "ok"}` for format "json", else a short sentence.

Truncation (silent, as the real server): a prompt over num_ctx loses whole messages
from the front, keeping system messages and the latest one; if that still does not
fit it is cut to exactly num_ctx tokens (the first num_keep and the tail), so
prompt_eval_count reports what was kept.

Simplifications: the answer is only capped by num_predict
(context shift is assumed), and with an engine an unlimited num_predict means 512.
The queue applies to every generation (the real scheduler lets a request for a loaded
model skip it). size_vram is 0 without `vram_gib` (CPU-only), else all of size. Load/unload requests do not queue.

Modules, by concern: :mod:`.server` (lifecycle, scripting, routes), :mod:`.state` (loaded
models, the queue), :mod:`.faults` (fault injection), :mod:`.model` (answers, truncation,
real-model mode), :mod:`.responses` (chunks, finals, OpenAI shapes), :mod:`.handler` (HTTP
plumbing), :mod:`.wire` (constants, tokenizer, specs), :mod:`.__main__` (by hand).
"""

from tests.servers.ollama.server import FakeOllama
from tests.servers.ollama.wire import BUSY_MESSAGE, ModelSpec, chatty, estimate_tokens, fenced, refused_url

__all__ = ["BUSY_MESSAGE", "FakeOllama", "ModelSpec", "chatty", "estimate_tokens", "fenced", "refused_url"]
