"""Writing answers: inside the root, never through a symlink, with the user's umask; and the
ledger's cut of an invalid answer's reason, which carries nothing from the answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_dist.checks.validate import OutputSpec, reason_kind, validate
from ollama_dist.errors import OutputError
from ollama_dist.run import outputs


@pytest.fixture(params=[True, False], ids=["by-descriptor", "by-path"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Both ways of writing: descriptor-relative (Linux, macOS) and by path names (elsewhere)."""
    if request.param and not outputs._BY_FD:
        pytest.skip("no descriptor-relative calls here")
    monkeypatch.setattr(outputs, "_BY_FD", request.param)
    yield request.param


def test_writes_inside_the_root_creating_folders_with_the_umask(tmp_path: Path, mode: bool) -> None:
    root = tmp_path.resolve()
    old = os.umask(0o027)
    try:
        target = outputs.write_atomic(root / "a" / "b" / "x.json", '{"k": 1}', root)
    finally:
        os.umask(old)
    assert target.read_text() == '{"k": 1}\n'
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]  # no temp file left behind
    outputs.write_atomic(target, "second", root)
    assert target.read_text() == "second\n"


def test_a_symlinked_folder_is_not_followed(tmp_path: Path, mode: bool) -> None:
    root, outside = (tmp_path / "root").resolve(), tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    with pytest.raises(OutputError, match="cannot write") as caught:
        outputs.write_atomic(root / "out" / "x.json", "text", root)
    assert caught.value.path == str(root / "out" / "x.json")
    assert list(outside.iterdir()) == []


def test_a_folder_in_the_way_is_named(tmp_path: Path, mode: bool) -> None:
    root = tmp_path.resolve()
    (root / "x.json").mkdir()
    with pytest.raises(OutputError, match="a folder is in the way"):
        outputs.write_atomic(root / "x.json", "text", root)


def test_outside_the_root_symlinks_in_the_path_are_fine(tmp_path: Path) -> None:
    """The home's run folder may sit behind a symlink (a moved home): only the root is guarded."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "moved").symlink_to(real)
    outputs.write_atomic(tmp_path / "moved" / "runs" / "x.txt", "t", root=tmp_path / "project")
    assert (real / "runs" / "x.txt").read_text() == "t\n"


def test_edited_compares_the_file_with_the_recorded_answer(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    outputs.write_atomic(path, "{}", tmp_path)
    recorded = outputs.digest("{}")
    assert not outputs.edited(path, recorded) and not outputs.edited(path, None)
    path.write_text("{}  \n")
    assert outputs.edited(path, recorded)
    path.unlink()
    assert not outputs.edited(path, recorded)  # gone: answered again, nothing to keep


CANARY = "zebra42"


@pytest.mark.parametrize(("answer", "spec"), [
    (f"I think it is {CANARY}.", OutputSpec(format="json")),
    (f'"{CANARY}"', OutputSpec(format="json")),
    (f'{{"city": ["{CANARY}"]}}', OutputSpec(format="json", schema={
        "type": "object", "properties": {"city": {"type": "string"}}})),
    (f'{{"{CANARY}": 1}}', OutputSpec(format="json", schema={"type": "object", "additionalProperties": False})),
    (f"{CANARY}: [", OutputSpec(format="yaml")),
    (f"{CANARY}", OutputSpec(format="yaml")),
    (f"def {CANARY}(:\n    pass", OutputSpec(format="code", language="python")),
    (f"--- a/{CANARY}\n+++ b/{CANARY}\n@@ -1,3 +1,1 @@\n-{CANARY}\n", OutputSpec(format="diff")),
    (f"{CANARY}", OutputSpec(format="text", pattern="^[0-9]+$")),
], ids=["prose", "scalar", "schema-value", "schema-key", "yaml", "yaml-scalar", "python", "diff", "pattern"])
def test_the_ledger_reason_of_an_invalid_answer_quotes_nothing_from_it(answer: str, spec: OutputSpec) -> None:
    verdict = validate(answer, spec)
    assert not verdict.ok
    kind = reason_kind(verdict.reason)
    assert CANARY not in kind and kind != ""


def test_an_unknown_reason_is_cut_to_a_generic_one() -> None:
    assert reason_kind(f"value {CANARY!r} does not occur in the input") == "the answer is invalid"
    assert reason_kind("the answer was cut off at max_tokens (40); answer more briefly") == \
        "the answer was cut off at max_tokens"
