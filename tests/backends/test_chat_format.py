"""A task's system prompt reaches llama.cpp models whose chat format has no system role (Gemma's),
and llama.cpp's own log stays off stderr."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ollama_dist.backends.base import Message, Request
from ollama_dist.backends.chat_format import PROBE_SYSTEM, fold_system, rendered_prompt, renders_system
from ollama_dist.backends.embedded import EmbeddedBackend, LocalModel

pytest_plugins = ["tests.servers.fixtures"]

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "You extract data. Reply with JSON only, no prose."
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="needs llama-cpp-python (run scripts/setup.sh)")


def sys_(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize(("messages", "folded"), [
    pytest.param([sys_("S"), user("U")], [user("S\n\nU")], id="system-before-the-first-user-turn"),
    pytest.param([user("U")], [user("U")], id="no-system-unchanged"),
    pytest.param([sys_("S"), user("U1"), assistant("A"), user("U2")], [user("S\n\nU1"), assistant("A"), user("U2")],
                 id="only-the-first-user-turn"),
    pytest.param([sys_("S1"), sys_("S2"), user("U")], [user("S1\n\nS2\n\nU")], id="every-system-message"),
    pytest.param([sys_("S")], [user("S")], id="no-user-turn-becomes-one"),
    pytest.param([sys_(""), user("U")], [user("U")], id="empty-system-dropped"),
])
def test_fold_system(messages: list[dict[str, str]], folded: list[dict[str, str]]) -> None:
    assert fold_system(messages) == folded
    assert messages[0]["role"] in ("system", "user")  # the input is not modified


def handler_of(chat_format: str) -> Any:
    """What `rendered_prompt` reads of a `llama_cpp.Llama` (its handler lookup), for a format."""
    return SimpleNamespace(chat_format=chat_format, chat_handler=None, _chat_handlers={})


@needs_llama_cpp
@pytest.mark.parametrize(("chat_format", "has_system"), [("gemma", False), ("chatml", True), ("llama-2", True)])
def test_the_probe_reads_llama_cpps_own_formatters(chat_format: str, has_system: bool) -> None:
    assert renders_system(handler_of(chat_format)) is has_system


@needs_llama_cpp
def test_gemma_gets_the_system_text_in_its_first_user_turn() -> None:
    prompt = rendered_prompt(handler_of("gemma"), fold_system([sys_(SYSTEM), user("Maria lives in Lisbon.")]))
    assert prompt == f"<start_of_turn>user\n{SYSTEM}\n\nMaria lives in Lisbon.<end_of_turn>\n<start_of_turn>model\n"
    assert SYSTEM not in (rendered_prompt(handler_of("gemma"), [sys_(SYSTEM), user("hi")]) or "")  # the bug


def test_a_handler_the_probe_does_not_fit_leaves_the_messages_alone() -> None:
    def generates_at_once(**_: Any) -> Any:
        raise RuntimeError("a custom handler that does not tokenize a prompt first")

    odd = SimpleNamespace(chat_format="x", chat_handler=generates_at_once, _chat_handlers={})
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs llama-cpp-python")
    assert rendered_prompt(odd, [sys_(PROBE_SYSTEM), user("hi")]) is None and renders_system(odd) is True


# --- the real model ----------------------------------------------------------------------


def request(text: str, **fields: Any) -> Request:
    return Request(model="gemma3:270m", messages=(Message(role="user", content=text),), **fields)


@pytest.mark.real_model
async def test_the_embedded_tier_sends_the_system_prompt(local_model: LocalModel) -> None:
    """The prompt the model is given holds the system text, and the model reads it: the prompt
    tokens it reports grow by the system text's tokens."""
    text = "Maria flew to Lisbon last week."
    prompt = local_model.prompt([sys_(SYSTEM), user(text)])
    assert prompt is not None and f"{SYSTEM}\n\n{text}" in prompt
    backend = EmbeddedBackend(model=local_model)
    bare = await backend.complete(request(text, max_tokens=2))
    with_system = await backend.complete(request(text, system=SYSTEM, max_tokens=2))
    added = local_model.count_tokens(f"{SYSTEM}\n\n")
    assert with_system.input_tokens - bare.input_tokens == pytest.approx(added, abs=2)


@pytest.mark.real_model
def test_loading_and_answering_print_nothing_on_stderr(local_model: LocalModel) -> None:
    """llama.cpp's `llama_kv_cache_iswa: using full-size SWA cache` line (and all its log) stays off stderr."""
    code = textwrap.dedent("""\
        from ollama_dist.backends.embedded import LocalModel
        from tests.servers.fixtures import model_home
        model = LocalModel(home=model_home(), n_ctx=2048)
        model.load()
        print(model.chat([{"role": "user", "content": "hi"}], max_tokens=2, temperature=0).completion_tokens)
        """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2" and done.stderr == ""
