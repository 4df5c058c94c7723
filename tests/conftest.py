"""Every test gets its own ollama-dist home and a clean environment, and writes nothing
into the checkout (the session fails if it did: tests/checkout_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkout_guard import CheckoutGuard

ENV_VARS = (
    "OLLAMA_HOST", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN",
    "OLLAMA_DIST_HOME", "OLLAMA_DIST_SESSION", "CLAUDE_CODE_SESSION_ID", "OLLAMA_DIST_CLOUD_BACKEND",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("OLLAMA_DIST_HOME", str(home))
    # a `claude` on the developer's PATH must not become the cloud backend of tests without a key
    # (tests/backends/test_backend_claude_code.py picks it on purpose)
    monkeypatch.setenv("OLLAMA_DIST_CLOUD_BACKEND", "api")
    # no config file from the developer's working directory leaks in
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(CheckoutGuard(REPO), "checkout-guard")


@pytest.fixture
def repo_root() -> Path:
    return REPO
