"""Projected TRAK features of training examples and of targets at each denoising step.

The featurizer is a strategy: anything with ``dim``, ``__call__(x0, timesteps, noises, mask)
-> (B, k)`` and ``describe()`` (the :class:`Featurizer` protocol). The dense strategy,
:class:`GradientFeaturizer`, forms per-example gradients and hands them to a swappable
:class:`~stepattr.trak.projectors.Projector`; a strategy that never forms the full gradient
(:class:`~stepattr.trak.factored.FactoredFeaturizer`, ``attribution.projector: factored``)
plugs in through :func:`make_featurizer` and reuses the drivers below: implement the protocol
in its own module, return it from :func:`make_featurizer` for its ``attribution.projector``
name, and its methods get their name suffix from
:data:`stepattr.core.names.PROJECTOR_SUFFIXES`; rules, storage and scores stay unchanged.

The drivers draw the random (timestep, noise) pairs per example from
:mod:`stepattr.core.output_functions` (seeded by example, never by batch), so features do not
depend on the batch size or on how the training set is sharded, and every model sees the same draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from stepattr.core.output_functions import OUTPUT_FUNCTIONS, per_draw, target_draws, train_draws
from stepattr.core.settings import settings_from
from stepattr.training.conditioning import CaptionConditioning
from stepattr.trak.factored import FactoredFeaturizer
from stepattr.trak.gradients import num_parameters, per_example_gradients, prepare_model
from stepattr.trak.projectors import Projector, make_projector


@dataclass(frozen=True)
class AttributionSettings:
    """The ``attribution`` section (config/schema.yaml), typed once where a job starts; its
    readers: the trak jobs, and the influence and patch jobs that reuse TRAK's draws.

    The featurize rules pass only the keys the features depend on
    (rules/functions/trak.smk ``FEATURIZE_KEYS``: changing a ridge candidate must not rerun
    featurization), so ``projector``, ``output_functions`` and ``lambdas``, required in a run's
    config, have defaults that mark them absent. Other defaults: the schema's.
    """

    train_timesteps: int
    target_resamples: int
    proj_dim: int
    batch_size: int
    shards: int
    seed: int
    train_timestep_draws: str = "uniform"
    projector: str | None = None
    factored_expansion: int = 1
    compare_projectors: tuple[str, ...] = ()
    feature_dtype: str = "float32"
    draws_per_pass: int | None = None
    output_functions: tuple[str, ...] = ()
    lambdas: tuple[float, ...] = ()

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> AttributionSettings:
        return settings_from(cls, section, "attribution")


class Featurizer(Protocol):
    """Maps a batch of examples with their draws to k-dimensional features."""

    dim: int

    def __call__(
        self,
        x0: torch.Tensor,
        timesteps: torch.Tensor,
        noises: torch.Tensor,
        mask: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x0 (B,C,H,W)``, ``timesteps (B,J)``, ``noises (B,J,C,H,W)``, for a text-conditioned
        model ``states (B,J,L,D)`` -> features ``(B, k)``."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity: two feature files are comparable only if these are equal."""
        ...


class GradientFeaturizer:
    """Dense strategy: the full per-example gradient (vmap), then a random projection."""

    def __init__(
        self,
        model: torch.nn.Module,
        output_function: str,
        alphas_cumprod: torch.Tensor,
        projector: Projector,
        draws_per_pass: int | None = None,
    ) -> None:
        if output_function not in OUTPUT_FUNCTIONS:
            raise ValueError(
                f"unknown output function {output_function!r}; expected one of {OUTPUT_FUNCTIONS}"
            )
        if projector.num_params != num_parameters(model):
            raise ValueError(
                f"projector expects {projector.num_params} parameters, "
                f"the model has {num_parameters(model)}"
            )
        self.model = prepare_model(model)
        self.output_function = output_function
        self.alphas_cumprod = alphas_cumprod
        self.projector = projector
        self.draws_per_pass = draws_per_pass
        self.dim = projector.dim
        param = next(model.parameters())
        self._device, self._dtype = param.device, param.dtype

    def __call__(
        self,
        x0: torch.Tensor,
        timesteps: torch.Tensor,
        noises: torch.Tensor,
        mask: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        grads = per_example_gradients(
            self.model,
            self.output_function,
            self.alphas_cumprod,
            x0.to(self._device, self._dtype),
            timesteps.to(self._device),
            noises.to(self._device, self._dtype),
            None if mask is None else mask.to(self._device, self._dtype),
            self.draws_per_pass,
            None if states is None else states.to(self._device, self._dtype),
        )
        return self.projector.project(grads)

    def describe(self) -> dict[str, Any]:
        return {
            "featurizer": "gradient",
            "output_function": self.output_function,
            **self.projector.describe(),
        }


def make_featurizer(
    model: torch.nn.Module,
    output_function: str,
    alphas_cumprod: torch.Tensor,
    projector: str,
    dim: int,
    seed: int,
    draws_per_pass: int | None = None,
    factored_expansion: int = 1,
) -> Featurizer:
    """Config ``attribution.projector`` -> the featurizer strategy that implements it.

    ``draws_per_pass`` (config ``attribution.draws_per_pass``) bounds the images per vmap (or,
    factored, forward+backward) pass to batch x draws_per_pass; None puts all K (or R) draws of
    a batch in one pass. ``factored`` (:mod:`stepattr.trak.factored`) sketches each layer to
    ``factored_expansion x dim`` dims in all, then mixes them down to ``dim``; its ``dim``
    attribute is the exact size (smaller only for a model with fewer parameters).
    """
    if projector == "factored":
        return FactoredFeaturizer(
            model, output_function, alphas_cumprod, dim, seed, draws_per_pass, factored_expansion
        )
    device = next(model.parameters()).device
    dense = make_projector(projector, num_parameters(model), dim, seed, device)
    return GradientFeaturizer(model, output_function, alphas_cumprod, dense, draws_per_pass)


def shard_indices(num_examples: int, shards: int, shard: int) -> np.ndarray:
    """Indices of one of ``shards`` near-equal contiguous slices of ``range(num_examples)``."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside [0, {shards}) (attribution.shards)")
    return np.array_split(np.arange(num_examples), shards)[shard]


def train_features(
    featurizer: Featurizer,
    images: torch.Tensor,
    indices: Sequence[int],
    num_draws: int,
    seed: int,
    num_train_timesteps: int,
    batch_size: int,
    progress: bool = False,
    conditioning: CaptionConditioning | None = None,
    timesteps: str = "uniform",
) -> np.ndarray:
    """Features ``(N, k)`` float32 of training images ``(N,C,H,W)`` in [-1, 1] (or latents).

    ``indices`` are the images' positions in the training split: they seed each example's
    K = ``num_draws`` (timestep, noise) draws (``timesteps``: uniform | stratified,
    :func:`stepattr.core.output_functions.train_draws`), so a shard gives the rows the whole
    split gives;
    with ``conditioning`` (text-to-image) also each draw's caption, dropout included
    (:meth:`~stepattr.training.conditioning.CaptionConditioning.draw_states`).
    """
    if len(indices) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(indices)} indices")
    out = np.empty((images.shape[0], featurizer.dim), dtype=np.float32)
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc="train features", disable=not progress, mininterval=10):
        stop = min(start + batch_size, images.shape[0])
        ts, ns = train_draws(
            seed, indices[start:stop], num_draws, images.shape[1:], num_train_timesteps,
            timesteps,
        )  # fmt: skip
        states = None
        if conditioning is not None:
            states = conditioning.draw_states(indices[start:stop], num_draws, seed)
        feats = featurizer(images[start:stop], ts, ns, states=states)
        out[start:stop] = feats.float().cpu().numpy()
    return out


def target_features(
    featurizer: Featurizer,
    x0hat: torch.Tensor,
    target_ids: Sequence[int],
    grid: Sequence[int],
    num_draws: int,
    seed: int,
    batch_size: int,
    mask: torch.Tensor | None = None,
    progress: bool = False,
    states: torch.Tensor | None = None,
) -> np.ndarray:
    """Target features ``(N, G, k)`` float32: gradients of f_t around x0hat[:, g], t = grid[g].

    ``target_ids`` are global target numbers; with the step they seed the R = ``num_draws``
    noises, so every model is evaluated with the same noises. ``mask`` (H, W) or (C, H, W)
    restricts the output function to a patch. ``states`` (N, L, D): each target's prompt
    states (text-to-image), the same at every draw.
    """
    n, g = x0hat.shape[:2]
    if g != len(grid) or len(target_ids) != n:
        raise ValueError(
            f"x0hat {tuple(x0hat.shape)} does not match grid ({len(grid)} steps) "
            f"and target_ids ({len(target_ids)})"
        )
    out = np.empty((n, g, featurizer.dim), dtype=np.float32)
    jobs = [(gi, start) for gi in range(g) for start in range(0, n, batch_size)]
    for gi, start in tqdm(jobs, desc="target features", disable=not progress, mininterval=10):
        stop = min(start + batch_size, n)
        ts, ns = target_draws(
            seed, target_ids[start:stop], int(grid[gi]), num_draws, x0hat.shape[2:]
        )
        rows = slice(start, stop)
        feats = featurizer(x0hat[rows, gi], ts, ns, mask, states=per_draw(states, rows, num_draws))
        out[start:stop, gi] = feats.float().cpu().numpy()
    return out


def whole_loss_features(
    features_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x0hat: np.ndarray,
    final: np.ndarray,
    step_features: np.ndarray,
) -> np.ndarray:
    """D-TRAK's whole-loss target features ``(N, 1, k)``: the features around x_0 at every
    grid timestep (``final``, :meth:`~stepattr.targets.sets.TargetSets.at_final_image`),
    averaged over the grid.

    Scores are linear in target features, so scoring the average scores the loss averaged
    over the grid's timesteps. ``features_of(rows, x0hat_rows)`` featurizes some targets at
    every step; rows whose x0hat_t is already x_0 reuse ``step_features`` (N, G, k).
    """
    out = np.array(step_features, dtype=np.float32, copy=True)
    moved = np.flatnonzero((x0hat != final).reshape(len(x0hat), -1).any(axis=1))
    if len(moved):
        out[moved] = features_of(moved, final[moved])
    return out.mean(axis=1, keepdims=True)
