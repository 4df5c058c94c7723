"""Placeholders: the `{input}`, `{path}`, `{name}` of a prompt and the `{stem}`, `{name}`, `{path}` of
a write template; finding them, filling them in one pass, and naming a misspelt one."""

from __future__ import annotations

import difflib
import re

from ollama_dist.errors import InputError
from ollama_dist.yamlfile import YamlDoc, dotted

PROMPT_FIELDS = ("input", "path", "name")
WRITE_FIELDS = ("stem", "name", "path")
# `{word}` is a placeholder; `{{word}}` (doubled) is left as it stands, and so is any other brace
_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def placeholders(template: str) -> list[str]:
    """The `{word}` placeholders of a template, in order (a doubled `{{word}}` is not one)."""
    return _PLACEHOLDER.findall(template)


def fill(template: str, values: dict[str, str]) -> str:
    """Each known `{word}` replaced by its value in one pass: a value is never expanded again."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def check_placeholders(prompt: str | None, write: str | None, doc: YamlDoc,
                        prefix: tuple[str | int, ...]) -> list[InputError]:
    """A typo such as `{inptu}` is an error. In a prompt, other words in braces are text (an
    API path's `{id}`, say) unless they look like a known placeholder; a write template
    knows only its own."""
    checks = [("prompt", template, PROMPT_FIELDS, True) for template in (prompt,) if template]
    checks += [("output.write", template, WRITE_FIELDS, False) for template in (write,) if template]
    errors = []
    for field_name, template, known, lenient in checks:
        loc = prefix + tuple(field_name.split("."))
        for word in placeholders(template):
            if word in known:
                continue
            close = difflib.get_close_matches(word, known, n=1, cutoff=0.7)
            if lenient and not close:
                continue
            hint = f"did you mean `{{{close[0]}}}`?" if close else f"known here: {', '.join(f'{{{k}}}' for k in known)}"
            errors.append(InputError(
                f"unknown placeholder `{{{word}}}`", file=str(doc.path),
                line=doc.line_of(loc), field=dotted(loc),
                hint=hint + (" (write `{{" + word + "}}` to keep the braces as text)" if lenient else "")))
    return errors
