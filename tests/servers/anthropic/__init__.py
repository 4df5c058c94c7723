"""The fake Anthropic API (see :mod:`tests.servers.anthropic.server`), re-exported by its old name."""

from tests.servers.anthropic.server import (
    DEFAULT_MODELS,
    ERROR_TYPES,
    AnthropicServer,
    ApiError,
    RecordedRequest,
    main,
    minimal_instance,
    model_major,
    tokens,
)

__all__ = [
    "DEFAULT_MODELS",
    "ERROR_TYPES",
    "AnthropicServer",
    "ApiError",
    "RecordedRequest",
    "main",
    "minimal_instance",
    "model_major",
    "tokens",
]
