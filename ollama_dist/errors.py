"""One exception tree. Each error carries a message a user can act on and an exit code.

Expected outcomes (a routing decision, an invalid answer, a failed job) are values,
not exceptions; these mean something broke or the input is unusable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run of the same batch holds the lock
EXIT_INTERRUPTED = 130


class OllamaDistError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = EXIT_JOB_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def as_json(self) -> dict[str, Any]:
        """What `--json` prints (as `{"error": ...}`) when a command ends on this error."""
        return {"type": type(self).__name__, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}


class InputError(OllamaDistError):
    """Bad user input: a task file, a flag, a path. Exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        where = ""
        if file:
            where = file + (f":{line}" if line else "")
        if field:
            where = f"{where} field `{field}`" if where else f"field `{field}`"
        super().__init__(f"{where}: {message}" if where else message, hint=hint)

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "file": self.file, "line": self.line, "field": self.field}


class InputErrors(InputError):
    """Several problems with the input at once (a task file with three mistakes names all three),
    in the order they stand: file by file, then by line. `file`, `line` and `field` are the first's."""

    def __init__(self, errors: Sequence[InputError]) -> None:
        if not errors:
            raise ValueError("InputErrors needs at least one error")
        self.errors = tuple(errors)
        first = self.errors[0]
        OllamaDistError.__init__(self, "\n".join(str(e) for e in self.errors))
        self.file, self.line, self.field = first.file, first.line, first.field

    def as_json(self) -> dict[str, Any]:
        """The first error's fields (as one error has them) and `errors`: every one, in order."""
        return {**super().as_json(), "errors": [e.as_json() for e in self.errors]}

    @staticmethod
    def of(errors: Sequence[InputError]) -> InputError:
        """The one error itself, or all of them as InputErrors (nested lists flattened)."""
        flat = [e for err in errors for e in (err.errors if isinstance(err, InputErrors) else (err,))]
        unique = list({str(e): e for e in flat}.values())  # the same problem found twice is named once
        return unique[0] if len(unique) == 1 else InputErrors(unique)


class ConfigError(InputError):
    """Bad configuration file or environment value. Exit code 2."""


class ConfigErrors(InputErrors, ConfigError):
    """Several problems in one config file, in line order (each a ConfigError)."""


class LockedError(OllamaDistError):
    """Another run of the same batch is still running."""

    exit_code = EXIT_LOCKED


class LedgerError(OllamaDistError):
    """The SQLite ledger could not be opened, read or written (damaged, read-only, locked).
    Exit code 2: the user must act on the file (the message says how)."""

    exit_code = EXIT_BAD_INPUT


class OutputError(OllamaDistError):
    """An answer could not be written where it goes (that job fails; the run goes on)."""

    def __init__(self, message: str, *, path: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class RunDied(OllamaDistError):
    """A run stopped on an unexpected error; the ledger records it as died."""


class BackendError(OllamaDistError):
    """A model backend failed. `reason` is a short machine-readable word.

    `escalate` says whether the next tier of the ladder should be tried at once
    (the local server is down, busy or missing the model) rather than retried.
    """

    reason = "error"
    escalate = True

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "reason": self.reason}


class Unreachable(BackendError):
    reason = "unreachable"


class Timeout(BackendError):
    reason = "timeout"


class ModelMissing(BackendError):
    reason = "model_missing"


class WrongEndpoint(BackendError):
    """The endpoint is not the service it is configured as (an Ollama server as the cloud's base URL)."""

    reason = "wrong_endpoint"
    escalate = False
    exit_code = EXIT_BAD_INPUT


class RouteMissing(BackendError):
    """The server answered 404 for the route itself, not for a model: it does not speak that API there."""

    reason = "route_missing"


class Busy(BackendError):
    reason = "busy"


class BreakerOpen(BackendError):
    """The latency breaker opened while the job waited for a local slot."""

    reason = "breaker_open"


class RateLimited(BackendError):
    reason = "rate_limited"


class Overloaded(BackendError):
    reason = "overloaded"


class BudgetExceeded(BackendError):
    """The backend stopped at the spending cap it was given (Claude Code's --max-budget-usd)."""

    reason = "budget"
    escalate = False


class AuthError(BackendError):
    reason = "auth"
    exit_code = EXIT_BAD_INPUT


class BadRequest(BackendError):
    reason = "bad_request"


class BadResponse(BackendError):
    """The server answered, but not in the protocol's shape."""

    reason = "bad_response"
