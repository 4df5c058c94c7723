"""Write data/exemplars/bank.npz and bank-e5.npz: the shipped bank's vectors for the second opinion's
model and its veto model, so a first route does not embed it.

Run after any change to data/exemplars/bank.yaml (a test checks the file matches the bank
and the model): python scripts/bank_vectors.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from ollama_dist.routing.exemplars import bank_key, shipped_bank  # noqa: E402
from ollama_dist.routing.second_opinion import SHIPPED_VECTORS, VETO_VECTORS, E5Small, MiniLM  # noqa: E402


def main() -> None:
    bank = shipped_bank()
    for embedder, shipped in ((MiniLM(), SHIPPED_VECTORS), (E5Small(), VETO_VECTORS)):
        start = time.perf_counter()
        vectors = embedder.embed([e.text for e in bank])
        took = time.perf_counter() - start
        out = ROOT / "ollama_dist" / shipped
        np.savez(out, key=np.array(bank_key(bank, embedder.model_id)), vectors=vectors.astype(np.float32))
        print(f"bank_vectors: {len(bank)} exemplars embedded by {embedder.model_id} in {took:.1f} s -> {out} "
              f"({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
