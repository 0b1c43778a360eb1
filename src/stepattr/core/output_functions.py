"""The functions whose gradients TRAK projects, and their seeded random draws.

Two output functions, both sums over J (timestep, noise) draws of a per-pixel mean:

- ``loss`` (journey-TRAK): ``mean_pixels(mask * (eps(sqrt(a_t) x0 + sqrt(1-a_t) n, t) - n))^2``
- ``square_norm`` (D-TRAK): ``mean_pixels(mask * eps(sqrt(a_t) x0 + sqrt(1-a_t) n, t))^2``

Train side: x0 is a training image, J = K timesteps drawn uniformly with one noise each.
Target side at step t: x0 is the fixed ``x0hat_t``, J = R noises all at timestep t. The draws
are seeded per example (and per step), never per batch, so features do not depend on batch
size or sharding, and every model sees the same noises (common random numbers).

Evaluated on a whole model (no gradient): :func:`step_losses`, the loss output function f_t of
every target at every grid step, is the LDS ground truth (stepattr.lds.ground_truth) and the
counterfactual's f_t (stepattr.counterfactual.removal), one definition for both;
:func:`diffusion_losses` is D-TRAK's ground truth. docs/method.md states them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from stepattr.core.diffusion import add_noise
from stepattr.core.names import METHOD_OUTPUT_FUNCTIONS
from stepattr.core.seeds import chained_seed

OUTPUT_FUNCTIONS = tuple(METHOD_OUTPUT_FUNCTIONS.values())

EpsFn = Callable[..., torch.Tensor]  # eps(x_t, t) or, text-conditioned, eps(x_t, t, states)


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (a seed, an example index, a step)."""
    return torch.Generator().manual_seed(chained_seed(*keys))


TIMESTEP_DRAWS = ("uniform", "stratified")


def train_draws(
    seed: int,
    indices: Sequence[int],
    num_draws: int,
    shape: Sequence[int],
    num_timesteps: int,
    timesteps: str = "uniform",
) -> tuple[torch.Tensor, torch.Tensor]:
    """K timesteps and K noises per training example: ``(B, K)`` and ``(B, K, *shape)``.

    ``uniform``: K independent uniform timesteps (journey-TRAK). ``stratified``: one uniform
    timestep in each of K equal slices of [0, T), so every example's draws cover the schedule
    evenly, as D-TRAK's shared evenly spaced timesteps do, while staying unbiased: at small K no
    example lacks a draw near some step by chance.
    """
    if timesteps not in TIMESTEP_DRAWS:
        raise ValueError(f"timestep draws {timesteps!r}; expected one of {TIMESTEP_DRAWS}")
    edges = torch.arange(num_draws + 1) * num_timesteps // num_draws
    ts, ns = [], []
    for index in indices:
        gen = _generator(seed, 0, index)
        if timesteps == "uniform":
            ts.append(torch.randint(0, num_timesteps, (num_draws,), generator=gen))
        else:
            offsets = torch.rand(num_draws, generator=gen, dtype=torch.float64)
            ts.append(edges[:-1] + (offsets * (edges[1:] - edges[:-1])).long())
        ns.append(torch.randn((num_draws, *shape), generator=gen))
    return torch.stack(ts), torch.stack(ns)


def target_draws(
    seed: int, target_ids: Sequence[int], step: int, num_draws: int, shape: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """R noises per target at one step, all at timestep ``step``: ``(B, R)`` and ``(B, R, *shape)``.

    ``target_ids`` are global target numbers (unique across target sets), so two targets
    never share noises while every model evaluates a target with the same ones.
    """
    ns = [
        torch.randn((num_draws, *shape), generator=_generator(seed, 1, tid, step))
        for tid in target_ids
    ]
    ts = torch.full((len(target_ids), num_draws), int(step), dtype=torch.long)
    return ts, torch.stack(ns)


def output_value(
    eps_fn: EpsFn,
    kind: str,
    x0: torch.Tensor,
    timesteps: torch.Tensor,
    noises: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    mask: torch.Tensor | None = None,
    states: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example output ``(B,)`` for images ``x0 (B,C,H,W)`` and draws ``(B,J)``, ``(B,J,C,H,W)``.

    ``mask`` (H, W) or (C, H, W) weights the residual before the pixel mean (patch attribution).
    ``states`` (B, J, L, D): the text states of each draw (the text-to-image family), handed to
    ``eps_fn`` as its third argument; None for an unconditional model.
    """
    if kind not in OUTPUT_FUNCTIONS:
        raise ValueError(f"unknown output function {kind!r}; expected one of {OUTPUT_FUNCTIONS}")
    b, j = timesteps.shape
    flat_t = timesteps.reshape(b * j)
    flat_n = noises.reshape(b * j, *noises.shape[2:])
    flat_x0 = x0.unsqueeze(1).expand(b, j, *x0.shape[1:]).reshape(b * j, *x0.shape[1:])
    x_t = add_noise(flat_x0, flat_n, flat_t, alphas_cumprod)
    if states is None:
        eps = eps_fn(x_t, flat_t)
    else:
        eps = eps_fn(x_t, flat_t, states.reshape(b * j, *states.shape[2:]).to(x_t.dtype))
    residual = eps - flat_n if kind == "loss" else eps
    if mask is not None:
        residual = residual * mask.to(residual.dtype)
    per_draw = residual.pow(2).flatten(1).mean(dim=1)
    return per_draw.reshape(b, j).sum(dim=1)


def per_draw(states: torch.Tensor | None, rows: slice, draws: int) -> torch.Tensor | None:
    """Each example's states ``(m, L, D)`` -> ``(B, draws, L, D)`` for the examples ``rows``."""
    if states is None:
        return None
    part = states[rows]
    return part.unsqueeze(1).expand(part.shape[0], draws, *part.shape[1:])


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def step_losses(
    eps_fn: EpsFn,
    x0hat: torch.Tensor,
    target_ids: Sequence[int],
    grid: Sequence[int],
    resamples: int,
    seed: int,
    alphas_cumprod: torch.Tensor,
    batch_size: int = 256,
    states: torch.Tensor | None = None,
) -> np.ndarray:
    """``f`` (m, G): the loss output function of every target at every grid step.

    ``x0hat`` (m, G, C, H, W) on the model's device; ``batch_size`` bounds the images per
    forward pass (targets x resamples); ``states`` (m, L, D): each target's prompt states.
    """
    m, shape = x0hat.shape[0], tuple(x0hat.shape[2:])
    out = np.empty((m, len(grid)), dtype=np.float64)
    per_batch = max(1, batch_size // resamples)
    for g, step in enumerate(tqdm(list(grid), desc="steps", mininterval=5)):
        for rows in _chunks(m, per_batch):
            ids = [int(i) for i in target_ids[rows]]
            ts, ns = target_draws(seed, ids, int(step), resamples, shape)
            values = output_value(
                eps_fn,
                "loss",
                x0hat[rows, g],
                ts.to(x0hat.device),
                ns.to(x0hat.device),
                alphas_cumprod,
                states=per_draw(states, rows, resamples),
            )
            out[rows, g] = values.double().cpu().numpy()
    return out


@torch.no_grad()
def diffusion_losses(
    eps_fn: EpsFn,
    x0: torch.Tensor,
    target_ids: Sequence[int],
    draws: int,
    seed: int,
    alphas_cumprod: torch.Tensor,
    batch_size: int = 256,
    states: torch.Tensor | None = None,
) -> np.ndarray:
    """``dtrak`` (m,): each image's diffusion loss averaged over ``draws`` uniform timesteps
    (under its ``states`` (m, L, D), where given)."""
    m, shape = x0.shape[0], tuple(x0.shape[1:])
    num_timesteps = len(alphas_cumprod)
    out = np.empty(m, dtype=np.float64)
    for rows in _chunks(m, max(1, batch_size // draws)):
        ids = [int(i) for i in target_ids[rows]]
        ts, ns = train_draws(seed, ids, draws, shape, num_timesteps)
        values = output_value(
            eps_fn, "loss", x0[rows], ts.to(x0.device), ns.to(x0.device), alphas_cumprod,
            states=per_draw(states, rows, draws),
        )  # fmt: skip
        out[rows] = values.double().cpu().numpy() / draws
    return out
