"""Baseline attributions, in the TRAK score format ``(m, G, n)`` float32.

Sign as for TRAK: higher = more positive influence; for the similarity baselines, more similar
to the target at that step = more positive.

- ``random``: seeded standard Gaussian scores (the LDS floor).
- ``pixel``: cosine between ``x0hat_t`` and each training image, both in model space [-1, 1]
  (text-to-image: the decoded x0hat_t, :attr:`stepattr.targets.sets.TargetSets.image_x0hat`).
- ``embedding``: cosine between embeddings of ``x0hat_t`` and of each training image (the
  workflow classifier's penultimate layer, or CLIP's image tower where weights are configured).
- ``graddot``: TracIn-like ``phi(x) . phi(z_i)``, TRAK features without the kernel inverse,
  averaged over models.

A new baseline: its function here and its branch in :func:`compute`, its name in
:data:`stepattr.core.names.BASELINES` (which puts it in every LDS table and gives it a
``baseline_scores`` job), and its test in tests/test_lds.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from stepattr.core.names import BASELINES

Embedder = Callable[[np.ndarray], np.ndarray]


def random_scores(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Standard Gaussian scores from a seeded generator."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def cosine_scores(targets: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Cosine similarity of target vectors ``(m, G, d)`` with training vectors ``(n, d)``."""
    if targets.shape[-1] != train.shape[-1]:
        raise ValueError(
            f"target vectors {targets.shape} and training vectors {train.shape} differ"
        )

    def unit(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        norm = np.linalg.norm(v, axis=-1, keepdims=True)
        return v / np.where(norm > 0, norm, 1.0)

    return (unit(targets) @ unit(train).T).astype(np.float32)


def pixel_scores(x0hat: np.ndarray, train_images: np.ndarray) -> np.ndarray:
    """Cosine between ``x0hat`` (m, G, C, H, W) and training images (n, C, H, W) in [-1, 1]."""
    m, g = x0hat.shape[:2]
    return cosine_scores(x0hat.reshape(m, g, -1), train_images.reshape(len(train_images), -1))


def embedding_scores(embed: Embedder, x0hat: np.ndarray, train_images: np.ndarray) -> np.ndarray:
    """Cosine between embeddings of ``x0hat`` (m, G, C, H, W) and of the training images.

    ``embed`` maps images (N, C, H, W) in [-1, 1] to embeddings (N, d), batching itself.
    """
    m, g = x0hat.shape[:2]
    targets = np.asarray(embed(x0hat.reshape(m * g, *x0hat.shape[2:])))
    return cosine_scores(targets.reshape(m, g, -1), np.asarray(embed(train_images)))


def graddot_scores(
    train_features: Sequence[np.ndarray], target_features: Sequence[np.ndarray]
) -> np.ndarray:
    """``phi_c(x) . phi_c(z_i)`` averaged over models c: features (n, k) and (m, G, k) per model."""
    if len(train_features) != len(target_features) or not train_features:
        raise ValueError("need train and target features for the same, non-empty list of models")
    total = None
    for phi_train, phi_target in zip(train_features, target_features, strict=True):
        dots = np.asarray(phi_target, dtype=np.float64) @ np.asarray(phi_train, dtype=np.float64).T
        total = dots if total is None else total + dots
    return (total / len(train_features)).astype(np.float32)


def compute(
    name: str,
    x0hat: np.ndarray,
    train_images: np.ndarray,
    seed: int,
    embed: Embedder | None = None,
    features: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
) -> np.ndarray:
    """Scores ``(m, G, n)`` of baseline ``name`` for targets ``x0hat`` (m, G, C, H, W) and
    ``train_images`` (n, C, H, W), both in model space; ``features``: per model (train, target)
    TRAK features, for graddot."""
    m, g = x0hat.shape[:2]
    n = len(train_images)
    if name == "random":
        return random_scores((m, g, n), seed)
    if name == "pixel":
        return pixel_scores(x0hat, train_images)
    if name == "embedding":
        if embed is None:
            raise ValueError("the embedding baseline needs an embedding function")
        return embedding_scores(embed, x0hat, train_images)
    if name == "graddot":
        if features is None:
            raise ValueError("the graddot baseline needs TRAK features")
        scores = graddot_scores(*features)
        if scores.shape != (m, g, n):
            raise ValueError(f"features give scores {scores.shape}, expected {(m, g, n)}")
        return scores
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
