"""Mutated task files for the property test and the fuzz bench: shipped examples and hostile
seeds (git options, aliases, deep nesting, control characters, huge repeat counts, absolute
and `..` paths, symlinks out, binary inputs), each routed in a fresh sandbox.

`Sandbox.check` runs one file through `route` or `run --dry-run` and reports what happened: the exit
code, whether a traceback escaped, what changed on disk, and the peak traced memory.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tracemalloc
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
OUT = "@OUT@"  # replaced by the sandbox's folder outside the root
ROOT = "@ROOT@"  # replaced by the root itself (absolute paths that stay inside)
MEMORY_BOUND = 64 * 1024 * 1024  # traced bytes one route may peak at


def _bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ",".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "x:\n" + "".join(f"  {line}\n" for line in lines)


HOSTILE_SEEDS = [
    f"name: g\nprompt: P\ninputs: {{git: {{log: '--output={OUT}/pwned'}}}}\n",
    f"name: g\nprompt: P\ninputs: {{git: {{diff: '--output={OUT}/pwned'}}}}\n",
    f"name: g\nprompt: P\ninputs: {{git: {{changed: ' -o{OUT}/pwned'}}}}\n",
    "name: g\nprompt: 'Summarise {input}'\ninputs: {git: {diff: 'HEAD~1..HEAD'}}\n",
    "name: g\nprompt: P\ninputs: {git: {log: 'HEAD~1..HEAD'}}\n",
    "name: bomb\nprompt: P\n" + _bomb(9, 9),
    "name: r\nprompt: P\nx: &a [*a]\n",
    "name: r\nprompt: P\nx: &a {k: [*a]}\n",
    "name: d\nprompt: P\nx: " + "[" * 500 + "]" * 500 + "\n",
    "name: d\nprompt: P\nx: " + "{a: " * 200 + "1" + "}" * 200 + "\n",
    'name: c\nprompt: "hi\\x01\\x1b[31m there"\n',
    "name: c\nprompt: hi\x07there\n",
    'name: c\nprompt: P\noutput: {write: "out/\\0x"}\n',
    "name: c\nprompt: P\noutput: {pattern: 'a{99999999999}'}\n",
    "name: c\nprompt: P\noutput: {pattern: '" + "(" * 3000 + "'}\n",
    f"name: f\nprompt: P\ninputs: {{files: ['{OUT}/canary.txt']}}\n",
    "name: f\nprompt: P\ninputs: {files: ['../outside/*.txt']}\n",
    "name: f\nprompt: P\ninputs: {files: ['links/out.txt']}\n",
    "name: f\nprompt: P\ninputs: {files: ['linkdir/*']}\n",
    "name: f\nprompt: P\ninputs: {files: ['in/*'], each: true}\n",
    "name: f\nprompt: P\ninputs: {files: ['in/*'], each: false}\n",
    "name: f\nprompt: P\ninputs: {files: ['**/*'], each: true}\noutput: {write: 'out/{stem}.txt'}\n",
    "name: f\nprompt: P\ninputs: {files: ['in/*.txt']}\noutput: {write: 'out/same.txt'}\n",
    f"name: w\nprompt: P\noutput: {{write: '{OUT}/written.txt'}}\n",
    "name: w\nprompt: P\noutput: {write: '../outside/{name}.txt'}\n",
    "name: t\nprompt: 'x {inptu} {path} {name} {{name}} {\"a\": 1}'\ninputs: {text: '{name} {path}'}\n",
    "name: a\nname: b\nprompt: P\n",
    f"name: p\nprompt: !!python/object/apply:os.system ['touch {OUT}/pwned']\n",
    "name: n\nprompt: P\nmax_tokens: 99999999999999999999999\ntimeout_s: .inf\ntemperature: .nan\n",
    "defaults: &d {max_tokens: 5}\ntasks:\n  - {name: a, prompt: P, <<: *d}\n  - {name: b, prompt: Q, <<: [*d, *d]}\n",
    "? [a, b]\n: c\nname: k\nprompt: P\n",
    "name: s\nprompt: P\noutput: {format: json, schema: {$ref: 'http://example.com/s.json'}}\n",
]

FRAGMENTS = [
    f"--output={OUT}/pwned", f" --output={OUT}/pwned", "-p", "HEAD~1..HEAD", "HEAD", "@{-1}",
    f"{OUT}/canary.txt", "../outside/canary.txt", "../../..", "/etc/hostname", f"{ROOT}/in/a.txt",
    "links/out.txt", "linkdir/*", "in/bin.dat", "in/latin.txt", "**/*", "*", "in/{stem}.txt",
    "a{99999999999}", "(?P<x>a)(?P=x)", "[", "{inptu}", "{input}", "{path}", "{name}", "{{input}}",
    "&a [*a]", "*undefined", "&x 1", "!!binary AAAA", "!!set {a, b}", "!!timestamp 2001-12-14",
    "!!timestamp soon", "!!bool maybe", "!!int 0x", "!!float one",
    "[" * 120, "{" * 120, "\x00", "\\x00", "\\x01", "\\ud800", "\u202e", "\ufeff", "\t", "\r\n",
    "9" * 30, "-1", ".nan", ".inf", "~", "null", "true", "[]", "{}", "''", '"', "'", ": ", "- ", "#",
    "|\n  block\n", ">-\n  folded\n", "<<: *d", "out/../../x", "/tmp", "out/%s" % ("x" * 300),
]

VALUE_KEYS = ["name", "prompt", "system", "description", "kind", "max_tokens", "temperature", "timeout_s",
              "format", "pattern", "write", "text", "files", "each", "log", "diff", "changed", "schema"]


@lru_cache(maxsize=1)
def examples() -> tuple[str, ...]:
    """The shipped examples, with their inputs pointed at the sandbox's files."""
    out = []
    for path in sorted((REPO / "tasks" / "examples").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\.\./\.\./ollama_dist/[\w/]+\.py", "in/b.py", text)
        text = re.sub(r"\.\./\.\./[\w.]+|signatures/\*\.txt", "in/*.txt", text)
        out.append(text)
    return tuple(out)


@st.composite
def task_files(draw: st.DrawFn) -> bytes:
    """One mutated task file, as bytes (a mutation may make it invalid UTF-8)."""
    text = draw(st.one_of(st.sampled_from(examples()), st.sampled_from(HOSTILE_SEEDS)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]))):  # most files stay near valid
        text = draw(_mutation(text))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # a few raw bytes, perhaps not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


@st.composite
def _mutation(draw: st.DrawFn, text: str) -> str:
    lines = text.split("\n")
    kind = draw(st.sampled_from(["value", "insert", "line", "delete", "duplicate", "chars", "repeat"]))
    at = draw(st.integers(0, max(0, len(lines) - 1)))
    fragment = draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)))
    if kind == "value":  # `key: hostile` in place of one value
        key = draw(st.sampled_from(VALUE_KEYS))
        indent = len(lines[at]) - len(lines[at].lstrip(" "))
        quoted = draw(st.sampled_from(["{}", "'{}'", '"{}"', "[{}]", "{{{}}}"])).format(fragment)
        lines[at] = " " * indent + f"{key}: {quoted}"
    elif kind == "insert":
        cut = draw(st.integers(0, len(lines[at])))
        lines[at] = lines[at][:cut] + fragment + lines[at][cut:]
    elif kind == "line":
        lines.insert(at, fragment)
    elif kind == "delete" and len(lines) > 1:
        del lines[at]
    elif kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "chars":
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=3)) + text[cut:]
    elif kind == "repeat":  # a line or fragment many times over
        lines.insert(at, "\n".join([lines[at]] * draw(st.integers(2, 300))))
    return "\n".join(lines)


def rss_bytes() -> int:
    """This process's peak resident set so far (a high-water mark: it never goes down)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass(frozen=True)
class Result:
    exit_code: int
    traceback: str | None
    changed: tuple[str, ...]  # paths created, changed or removed in the sandbox
    peak_bytes: int  # traced, when asked for
    output: str


class Sandbox:
    """A root holding input files (text, latin-1, binary), a git repository and symlinks
    pointing out, beside a folder outside it with a canary. Made once and reused: nothing
    may change in it, and `check` says if anything did."""

    def __init__(self, base: Path) -> None:
        self.box = base.resolve() / "sandbox"
        self.root, self.outside = self.box / "root", self.box / "outside"
        (self.root / "in").mkdir(parents=True)
        self.outside.mkdir()
        (self.outside / "canary.txt").write_text("outside the root\n")
        self._git("init", "-q")
        (self.root / "in" / "a.txt").write_text("Our office moved to Lisbon.\n")
        (self.root / "in" / "latin.txt").write_bytes(b"caf\xe9\n")
        self._git("add", ".")
        self._git("commit", "-q", "-m", "first")
        (self.root / "in" / "latin.txt").write_bytes(b"caf\xe9\nna\xefve\n")
        (self.root / "in" / "b.py").write_text('import httpx\nprint(f"{name} {path}")\n')
        (self.root / "in" / "bin.dat").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
        (self.root / "in" / "kenji.txt").write_text("Kenji Sato\nkenji@example.com\n")
        self._git("add", ".")
        self._git("commit", "-q", "-m", "second")
        for n in (3, 4):  # the shipped examples read HEAD~3..HEAD
            self._git("commit", "-q", "--allow-empty", "-m", f"commit {n}")
        (self.root / "links").mkdir()
        (self.root / "links" / "out.txt").symlink_to(self.outside / "canary.txt")
        (self.root / "linkdir").symlink_to(self.outside, target_is_directory=True)
        self.task = self.root / "t.yaml"
        self.task.write_text("name: placeholder\nprompt: P\n")
        # The router's second opinion loads an embedding model once (~250 MB resident): that
        # constant would mask the high-water check for what a task file makes the loader allocate.
        home = Path(os.environ["OLLAMA_DIST_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.yaml").write_text("router: {semantic: false}\n")
        self._before = self._snapshot()
        self.started_rss = rss_bytes()  # a high-water mark: what came before this sandbox counts in it
        self.examples = 0

    def _git(self, *args: str) -> None:
        subprocess.run(["git", "-C", str(self.root), "-c", "user.email=t@example.com", "-c", "user.name=T",
                        *args], check=True, capture_output=True)

    def _snapshot(self) -> dict[str, tuple[str, int, str]]:
        seen: dict[str, tuple[str, int, str]] = {}
        for folder, dirs, files in os.walk(self.box, followlinks=False):
            for name in dirs + files:
                path = Path(folder) / name
                rel = path.relative_to(self.box).as_posix()
                if rel == "root/t.yaml":
                    continue
                if path.is_symlink():
                    seen[rel] = ("link", 0, os.readlink(path))
                elif path.is_dir():
                    seen[rel] = ("dir", 0, "")
                else:
                    data = path.read_bytes()
                    seen[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
        return seen

    def check(self, data: bytes, command: str, *, trace: bool = False) -> Result:
        """Route (`route`) or dry-run (`dry-run`) one task file as the sandbox's t.yaml.

        With `trace`, tracemalloc measures the peak (it triples the time); without, the
        caller bounds the process's high-water mark instead (`rss_bytes`)."""
        from typer.testing import CliRunner

        from ollama_dist.cli import app

        data = data.replace(OUT.encode(), str(self.outside).encode()).replace(ROOT.encode(), str(self.root).encode())
        self.task.write_bytes(data)
        args = ["route", "--json"] if command == "route" else ["run", "--dry-run", "--json", "--quiet"]
        peak = 0
        if trace:
            tracemalloc.start()
        try:
            result = CliRunner().invoke(app, [*args, str(self.task), "--root", str(self.root)])
            if trace:
                _, peak = tracemalloc.get_traced_memory()
        finally:
            if trace:
                tracemalloc.stop()
        after = self._snapshot()
        before = self._before
        changed = tuple(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))
        exc = result.exception
        traceback = None
        if exc is not None and not isinstance(exc, SystemExit):
            import traceback as tb

            traceback = "".join(tb.format_exception(exc))
        return Result(result.exit_code, traceback, changed, peak, result.output)
