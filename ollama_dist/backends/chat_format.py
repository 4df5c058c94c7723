"""What a llama.cpp chat format does with a system message, and the fold for formats that drop it.

llama-cpp-python renders a conversation into a prompt with a chat handler chosen by the
model's `chat_format`. Some formats have no system role: `gemma` (Gemma's turns are only
`user` and `model`) drops every system message, so a task's `system` prompt never reached
the model. Gemma's own chat template folds the system text into the first user turn;
`fold_system` does the same for any format that drops it.

In the embedded tier, whether a format drops it is not guessed from its name: `renders_system`
renders a probe conversation through the very handler `Llama.create_chat_completion` would use,
with a stand-in for the model that records the prompt it is asked to tokenize and stops there
(nothing is generated), and looks for the probe's system text in that prompt.

A remote OpenAI-compatible server's format cannot be probed. There the model's family says it:
`lacks_system_role` (Gemma). Folding for a Gemma model gives the very prompt Gemma's own template
renders, so it changes nothing where the server uses that template, and it keeps the system text
where the server's format drops it (llama-cpp-python's `--chat_format gemma`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROBE_SYSTEM = "ollama-dist system probe 5e1f"


class _Rendered(Exception):
    def __init__(self, prompt: str) -> None:
        super().__init__("rendered")
        self.prompt = prompt


class _PromptRecorder:
    """Stands in for `llama_cpp.Llama` in a chat handler: the first thing a formatter-based
    handler does with the model is tokenize the rendered prompt, which ends the call here."""

    verbose = False

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        raise _Rendered(text.decode("utf-8", errors="replace"))


def rendered_prompt(llama: Any, messages: Sequence[Mapping[str, str]]) -> str | None:
    """The prompt `llama`'s chat handler makes of `messages`, or None when the handler does not
    tokenize a rendered prompt first (a custom handler: multimodal, function calling)."""
    from llama_cpp import llama_chat_format

    handler: Any = (getattr(llama, "chat_handler", None)
                    or getattr(llama, "_chat_handlers", {}).get(llama.chat_format)
                    or llama_chat_format.get_chat_completion_handler(llama.chat_format))
    try:
        handler(llama=_PromptRecorder(), messages=[dict(m) for m in messages])
    except _Rendered as rendered:
        return rendered.prompt
    except Exception:  # noqa: BLE001 - a handler this probe does not fit: it cannot tell
        return None
    return None


def renders_system(llama: Any) -> bool:
    """Whether `llama`'s chat format puts a system message's text into the prompt (True when
    the probe cannot tell: the messages are then sent as they are)."""
    prompt = rendered_prompt(llama, [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": "hi"}])
    return prompt is None or PROBE_SYSTEM in prompt


def lacks_system_role(model: str) -> bool:
    """Whether `model` is of a family whose chat template has no system role: Gemma's turns are
    only `user` and `model` (gemma, gemma2, gemma3, codegemma, ... in any model id or file name)."""
    return "gemma" in model.lower()


def fold_system(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """`messages` without system messages, their text put before the first user turn's (as
    Gemma's own template does); a conversation with no user turn gets one holding the text."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
    rest = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{system}\n\n{message['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]
