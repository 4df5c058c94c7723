"""Where answers go: written atomically (temp file + rename), read back only if unchanged."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ollama_dist.errors import OllamaDistError
from ollama_dist.tasks import Job

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = {"json": ".json", "yaml": ".yaml", "code": ".txt", "diff": ".diff", "text": ".txt"}


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` so that a reader (or a crash) sees the old file or the new one, never half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text if text.endswith("\n") else text + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OllamaDistError(f"cannot write {path}: {exc.strerror}", hint="check the folder's permissions") from exc
    return path


def run_output_path(out_dir: Path, job: Job) -> Path:
    """Where a job's answer goes when its task has no `output.write`."""
    name = _UNSAFE.sub("_", job.id.split(":", 1)[-1]) if ":" in job.id else job.task.name
    return out_dir / job.task.name / (name + _SUFFIX.get(job.task.output.format, ".txt"))


def digest(text: str) -> str:
    body = text if text.endswith("\n") else text + "\n"
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def read_verified(path: str | None, expected: str | None) -> str | None:
    """The file's text if it still holds exactly what was recorded, else None."""
    if not path or not expected:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if hashlib.sha256(text.encode("utf-8")).hexdigest() == expected else None
