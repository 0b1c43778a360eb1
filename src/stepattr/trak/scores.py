"""TRAK scores from projected features: ``tau(x, i) = phi_x^T (Phi^T Phi + lambda I)^{-1} phi_i``.

Sign (why positive means "including z_i lowers f_t"). Let theta* minimise the training loss
``L(theta) = sum_j l_j(theta)`` and up-weight example i by eps: stationarity of
``L + eps l_i`` gives ``d theta / d eps = -H^{-1} g_i`` (H the Hessian of L, g_i = grad l_i).
To first order, including i (eps: 0 -> 1) therefore changes the target output by
``f(with i) - f(without i) = -grad f^T H^{-1} g_i``. TRAK replaces H by the Gauss-Newton
matrix of the linearised model, ``Phi^T Phi`` (rows phi_j = P^T g_j; out-to-loss weights Q = I),
plus a ridge ``lambda I``, and grad f by ``phi_x``:

    tau(x, i) = phi_x^T (Phi^T Phi + lambda I)^{-1} phi_i  ~=  f(without i) - f(with i),

so tau > 0 means training on z_i lowers f_t: for the loss output function, it pushes the model
toward the target. (With D-TRAK's squared-norm output function the same formula is used on
both sides; there the link to the loss change is empirical, not derived.)

Per model c the kernel is built from that model's features; scores are averaged over models.
All linear algebra runs in float64 on chunks of the (possibly memory-mapped, float16) train
features; one eigendecomposition of ``Phi^T Phi`` per model serves every lambda.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRAIN_CHUNK = 8192


def _check_features(train_features: Sequence[np.ndarray], target_features: Sequence[np.ndarray]):
    if len(train_features) != len(target_features) or not train_features:
        raise ValueError(
            f"need one train and one target feature array per model, got "
            f"{len(train_features)} and {len(target_features)}"
        )
    n = train_features[0].shape[0]
    m, g = target_features[0].shape[:2]
    for c, (phi, phix) in enumerate(zip(train_features, target_features, strict=True)):
        if phi.ndim != 2 or phix.ndim != 3:
            raise ValueError(
                f"model {c}: train features must be (n, k) and target features (m, G, k), "
                f"got {phi.shape} and {phix.shape}"
            )
        if phi.shape[0] != n or phix.shape[:2] != (m, g) or phi.shape[1] != phix.shape[2]:
            raise ValueError(
                f"model {c}: features {phi.shape} / {phix.shape} do not match model 0's "
                f"({n}, k) / ({m}, {g}, k)"
            )
    return n, m, g


def _gram(phi: np.ndarray) -> np.ndarray:
    """``Phi^T Phi`` in float64, accumulated over row chunks."""
    k = phi.shape[1]
    gram = np.zeros((k, k), dtype=np.float64)
    for start in range(0, phi.shape[0], TRAIN_CHUNK):
        block = np.asarray(phi[start : start + TRAIN_CHUNK], dtype=np.float64)
        gram += block.T @ block
    return gram


def trak_scores_multi(
    train_features: Sequence[np.ndarray],
    target_features: Sequence[np.ndarray],
    lams: Sequence[float],
) -> np.ndarray:
    """Scores for several ridge lambdas at once: ``(L, m, G, n)`` float32, averaged over models.

    ``train_features[c]`` is model c's ``(n, k)`` matrix Phi_c, ``target_features[c]`` its
    ``(m, G, k)`` target features. Per model, ``Phi^T Phi = U diag(s) U^T`` once; then
    ``(Phi^T Phi + lambda I)^{-1} = U diag(1 / (s + lambda)) U^T`` for each lambda.
    """
    lams = [float(lam) for lam in lams]
    if not lams or min(lams) <= 0:
        raise ValueError(f"lambdas must be positive, got {lams}")
    n, m, g = _check_features(train_features, target_features)
    out = np.zeros((len(lams), m * g, n), dtype=np.float32)
    for phi, phix in zip(train_features, target_features, strict=True):
        s, u = np.linalg.eigh(_gram(phi))
        s = np.clip(s, 0.0, None)
        xu = np.asarray(phix, dtype=np.float64).reshape(m * g, -1) @ u
        for li, lam in enumerate(lams):
            kernel_x = (xu / (s + lam)) @ u.T  # (mG, k): phi_x^T (Phi^T Phi + lam I)^{-1}
            for start in range(0, n, TRAIN_CHUNK):
                block = np.asarray(phi[start : start + TRAIN_CHUNK], dtype=np.float64)
                out[li, :, start : start + block.shape[0]] += kernel_x @ block.T
    out /= len(train_features)
    return out.reshape(len(lams), m, g, n)


def trak_scores(
    train_features: Sequence[np.ndarray], target_features: Sequence[np.ndarray], lam: float
) -> np.ndarray:
    """``(m, G, n)`` float32 scores averaged over models; positive = including z_i lowers f_t."""
    return trak_scores_multi(train_features, target_features, [lam])[0]
