"""A pytest plugin that fails the session when the tests left files in the checkout.

Tests write only under their temporary folders: a test that runs the shipped examples with the
checkout as its root would overwrite the user's `tasks/examples/out/`. The plugin lists what git
sees in the checkout (untracked, ignored and modified files, each with its size and mtime) when
the session starts and again when it ends; any path that appeared or changed fails the run and is
named. Caches that Python and pytest keep beside the code are not counted.

`tests/conftest.py` registers it for the repository; `tests/test_checkout_guard.py` proves it fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# written by the interpreter, pytest and the tools it runs, not by the tests themselves
CACHES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")

Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns); (-1, -1) once deleted


def snapshot(root: Path, *, skip: tuple[Path, ...] = ()) -> Snapshot | None:
    """Every untracked, ignored or modified path of the git checkout at `root`, or None when
    `root` is not a git checkout (an sdist, a copy): then there is nothing to guard."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain=v1", "-z", "--ignored", "--untracked-files=all"],
            capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found: Snapshot = {}
    entries = listed.decode("utf-8", "surrogateescape").split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        if entry[0] in "RC":  # a rename is followed by its old path
            index += 1
        rel = entry[3:]
        if any(part in CACHES or part.endswith(".egg-info") for part in Path(rel).parts):
            continue
        path = root / rel
        if any(path.is_relative_to(s) for s in skip):
            continue
        try:
            stat = path.lstat()
            found[rel] = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            found[rel] = (-1, -1)
    return found


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """The paths that appeared, changed or went away between two snapshots, sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


class CheckoutGuard:
    """Snapshots `root` at session start and fails the session if the tests changed it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.before: Snapshot | None = None

    def _skip(self, config: pytest.Config) -> tuple[Path, ...]:
        basetemp = config.option.basetemp  # --basetemp inside the checkout is where tmp_path lives
        return (Path(basetemp).resolve(),) if basetemp else ()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.before = snapshot(self.root, skip=self._skip(session.config))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.before is None:
            return
        after = snapshot(self.root, skip=self._skip(session.config))
        if after is None:
            return
        left = changes(self.before, after)
        if not left:
            return
        shown = "\n".join(f"  {p}" for p in left[:20]) + (f"\n  ... and {len(left) - 20} more" if len(left) > 20 else "")
        message = (f"these changed in the checkout {self.root} while the tests ran (a test must write only "
                   f"under tmp_path; or were they edited meanwhile?):\n{shown}\n")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "files left in the checkout", red=True)
            reporter.write(message)
        else:
            print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
