"""The checkout guard (tests/checkout_guard.py) fails a session that wrote into the checkout,
and only that: run in a pytest of its own over a git checkout made for the test."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.checkout_guard import changes, snapshot

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def checkout(pytester: pytest.Pytester) -> Path:
    """A git checkout with a tracked file, an ignored output folder the user already has, and a
    conftest that guards it (the guard's own tmp folders are outside it)."""
    root = pytester.path / "checkout"
    (root / "tasks/examples/out").mkdir(parents=True)
    (root / "tasks/examples/a.yaml").write_text("name: a\n")
    (root / ".gitignore").write_text("out/\n")
    (root / "tasks/examples/out/a.json").write_text('{"user": "kept"}\n')
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    pytester.makeconftest(textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from tests.checkout_guard import CheckoutGuard

        def pytest_configure(config):
            config.pluginmanager.register(CheckoutGuard(Path({str(root)!r})), "checkout-guard")
        """))
    return root


@pytest.mark.parametrize(("body", "left"), [
    ("(ROOT / 'tasks/examples/out/b.json').write_text('{}')", "tasks/examples/out/b.json"),
    ("(ROOT / 'tasks/examples/out/a.json').write_text('{\"user\": \"overwritten\"}')", "tasks/examples/out/a.json"),
    ("(ROOT / 'tasks/examples/a.yaml').write_text('name: changed-by-a-test\\n')", "tasks/examples/a.yaml"),
    ("(ROOT / 'notes.txt').write_text('x')", "notes.txt"),
], ids=["new-ignored-file", "overwritten-user-output", "modified-tracked-file", "new-untracked-file"])
def test_a_session_that_writes_into_the_checkout_fails(pytester: pytest.Pytester, checkout: Path,
                                                       body: str, left: str) -> None:
    pytester.makepyfile(test_writes=textwrap.dedent(f"""\
        import os, time
        from pathlib import Path
        ROOT = Path({str(checkout)!r})

        def test_it():
            time.sleep(0.01)  # a later mtime even on a coarse clock
            {body}
        """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*files left in the checkout*", f"  {left}"])


def test_a_session_that_writes_under_tmp_path_passes(pytester: pytest.Pytester, checkout: Path) -> None:
    pytester.makepyfile(test_clean=textwrap.dedent(f"""\
        from pathlib import Path
        ROOT = Path({str(checkout)!r})

        def test_it(tmp_path):
            (tmp_path / "out.json").write_text("{{}}")
            assert (ROOT / "tasks/examples/out/a.json").read_text()  # reading is fine
        """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "files left in the checkout" not in result.stdout.str()


def test_caches_and_outside_paths_do_not_count(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    git(root, "init", "-q")
    before = snapshot(root)
    assert before == {}
    (root / "pkg/__pycache__").mkdir(parents=True)
    (root / "pkg/__pycache__/m.cpython-311.pyc").write_bytes(b"x")
    (root / "basetemp").mkdir()
    (root / "basetemp/t.txt").write_text("x")
    after = snapshot(root, skip=(root / "basetemp",))
    assert after is not None and changes(before, after) == []
    assert snapshot(tmp_path / "not-a-checkout") is None
