"""A protocol-faithful fake of the Anthropic API on 127.0.0.1 (see :mod:`.server`), by concern:

- :mod:`.server`: the server, scripting (answers, faults, stalls) and the Messages routes;
- :mod:`.handler`: the HTTP plumbing (one request in, JSON or SSE out);
- :mod:`.batches`: the Message Batches routes;
- :mod:`.wire`: model ids, error shapes, token counts, request checks, the SSE encoding;
- :mod:`.tools`: scripted tool use (a model that calls the client's tools);
- :mod:`.instance`: the minimal JSON instance of a schema (the default structured answer);
- ``python -m tests.servers.anthropic``: run it by hand (:mod:`.__main__`).
"""

from tests.servers.anthropic.instance import minimal_instance
from tests.servers.anthropic.server import AnthropicServer
from tests.servers.anthropic.tools import tool_results
from tests.servers.anthropic.wire import DEFAULT_MODELS, ERROR_TYPES, ApiError, RecordedRequest, model_major, tokens

__all__ = [
    "DEFAULT_MODELS",
    "ERROR_TYPES",
    "AnthropicServer",
    "ApiError",
    "RecordedRequest",
    "minimal_instance",
    "model_major",
    "tokens",
    "tool_results",
]
