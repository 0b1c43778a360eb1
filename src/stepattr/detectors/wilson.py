"""The Wilson interval: how sure a detected rate is, for every stage that counts detections
(transition curves, prompt following, the fine-tuning effect, counterfactual flips)."""

from __future__ import annotations

import numpy as np

#: Two-sided 95% standard normal quantile.
Z95 = 1.959963984540054


def wilson_interval(
    successes: np.ndarray | int, n: np.ndarray | int, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1], sane at 0 and n)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("Wilson interval needs 0 <= successes <= n and n > 0")
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # exact at k = 0 and k = n, where the two terms cancel only to rounding (1e-17 above p = 0)
    low = np.where(k == 0, 0.0, np.clip(centre - half, 0, 1))
    high = np.where(k == n, 1.0, np.clip(centre + half, 0, 1))
    return low, high
