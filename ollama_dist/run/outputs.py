"""Where answers go: written atomically (temp file + rename), read back only if unchanged.

Under the run's root every folder is opened from the root down without following a
symlink, and the file is created and renamed relative to the last folder's descriptor:
a folder swapped for a symlink mid-run cannot send a write outside the root. Files get
0666 less the umask, like any file the user's tools create.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ollama_dist.errors import OutputError
from ollama_dist.tasks.model import Job

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = {"json": ".json", "yaml": ".yaml", "code": ".txt", "diff": ".diff", "text": ".txt"}
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# openat-style writing needs descriptor-relative open, mkdir and rename (Linux, macOS, BSD)
_BY_FD = bool(_NOFOLLOW and getattr(os, "O_DIRECTORY", 0)) and {os.open, os.mkdir, os.rename} <= os.supports_dir_fd


def _body(text: str) -> bytes:
    # a lone surrogate (a JSON answer may escape one) becomes '?': the file stays UTF-8
    return (text if text.endswith("\n") else text + "\n").encode("utf-8", errors="replace")


def write_atomic(path: Path, text: str, root: Path | None = None) -> Path:
    """Write `text` so that a reader (or a crash) sees the old file or the new one, never half.

    With `root` (resolved), a `path` inside it is reached folder by folder from the root,
    never through a symlink. Raises OutputError naming the path.
    """
    inside = root is not None and path.is_relative_to(root)
    try:
        if inside and root is not None and _BY_FD:
            folder = _open_folders(root, path.parent.relative_to(root).parts)
            try:
                _replace_at(folder, path.name, _body(text))
            finally:
                os.close(folder)
        else:
            _replace_by_path(path, _body(text), root if inside else None)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    return path


def _open_folders(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of root/parts..., creating missing folders, refusing symlinks on the way."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            try:
                step = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                step = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def _temp_name(name: str) -> str:
    return f".{name[:64]}.{secrets.token_hex(4)}.tmp"  # never longer than a name the folder takes


def _replace_at(folder: int, name: str, body: bytes) -> None:
    """Write a temp file in the open `folder`, then rename it over `name` there."""
    tmp = _temp_name(name)
    fd = os.open(tmp, _FILE_FLAGS, 0o666, dir_fd=folder)
    try:
        _fill(fd, body)
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise


def _replace_by_path(path: Path, body: bytes, root: Path | None) -> None:
    """The same by path names (no descriptor-relative calls here, or a target outside the root):
    the folder is re-checked against `root` right before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / _temp_name(path.name)
    fd = os.open(tmp, _FILE_FLAGS, 0o666)
    try:
        _fill(fd, body)
        if root is not None and not path.parent.resolve().is_relative_to(root):
            raise OSError(errno.ELOOP, "a symlink leads out of the run's root")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fill(fd: int, body: bytes) -> None:
    with os.fdopen(fd, "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):  # EMLINK: O_NOFOLLOW on a symlink (BSD)
        hint = "a symlink or a file stands where a folder should be; outputs are never written through symlinks"
    elif exc.errno == errno.EISDIR:
        reason, hint = "a folder is in the way", "remove the folder or change `output.write`"
    elif exc.errno == errno.ENAMETOOLONG:
        hint = "shorten the name `output.write` makes"
    else:
        hint = "check the folder's permissions and free space"
    return OutputError(f"cannot write {path}: {reason}", path=str(path), hint=hint)


def run_output_path(out_dir: Path, job: Job) -> Path:
    """Where a job's answer goes when its task has no `output.write`."""
    name = _UNSAFE.sub("_", job.id.split(":", 1)[-1]) if ":" in job.id else job.task.name
    return out_dir / job.task.name / (name + _SUFFIX.get(job.task.output.format, ".txt"))


def digest(text: str) -> str:
    return hashlib.sha256(_body(text)).hexdigest()


def file_digest(path: str | Path) -> str | None:
    """The sha256 of a regular file's bytes, or None when it is missing or unreadable."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def read_verified(path: str | None, expected: str | None) -> str | None:
    """The file's text if it still holds exactly what was recorded, else None."""
    if not path or not expected:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class Delivery:
    """Where a job's answer went: `path` (its target, or the run's folder when the target
    failed; None when nothing could be written) and `error` (why the target failed)."""

    path: Path | None
    error: OutputError | None = None

    def failure(self, job: Job) -> str:
        """The job's reason when its target could not be written."""
        assert self.error is not None
        where = (f"`output.write` at {job.task.file}:{job.task.line_of('output', 'write')}" if job.write_path
                 else "the run's output folder")
        kept = (f"; the answer is kept in {self.path} and a re-run serves it from there, unpaid, once the "
                "path is fixed" if self.path else "; the answer could not be kept anywhere")
        hint = f" (hint: {self.error.hint})" if self.error.hint else ""
        return f"{self.error.message} ({where}){hint}{kept}"


def deliver(job: Job, text: str, *, root: Path, out_dir: Path) -> Delivery:
    """Write a valid answer to the job's target; if that fails, keep it in the run's folder."""
    target = job.write_path or run_output_path(out_dir, job)
    try:
        return Delivery(write_atomic(target, text, root))
    except OutputError as exc:
        if job.write_path is None:
            return Delivery(None, exc)
        try:
            return Delivery(write_atomic(run_output_path(out_dir, job), text, root), exc)
        except OutputError:
            return Delivery(None, exc)


def edited(path: Path, recorded: str | None) -> bool:
    """True when `path` holds something other than the answer last recorded as written there."""
    if recorded is None:
        return False
    current = file_digest(path)
    return current is not None and current != recorded


def read_text(path: Path) -> str | None:
    """A file's text, or None when it is missing, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
