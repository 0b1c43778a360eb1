"""K-FAC and EK-FAC influence at every denoising step, on layer hooks (Mlodozeniec et al. 2025).

Influence of training example i on the output f_t of a target (docs/method.md):

    tau(x, i) = grad f_t(x)^T (H + d I)^{-1} grad l_i  ~=  f_t(without i) - f_t(with i),

the sign of TRAK (:mod:`stepattr.trak.scores`): positive = including z_i lowers f_t. H is the
Gauss-Newton matrix of the training loss, ``sum_rows J_r^T J_r`` over examples and their
(timestep, noise) draws (J_r: the Jacobian of the predicted noise of draw r), approximated
block-diagonally, one block per Conv2d/Linear layer (the bias is folded into its weight as
the input's constant 1):

- **K-FAC** (KFC for convs, Grosse & Martens 2016): ``A (x) S / M``, with A = E_r[sum_pos a a^T]
  over the layer's inputs (unfolded conv patches), S = E_r[sum_pos g g^T] over its output
  gradients, M its output positions. Output gradients are of ``<eps_hat_r, xi_r>`` with
  xi_r ~ N(0, I): ``E[J^T xi xi^T J] = J^T J``, the sampled-output Gauss-Newton ("true
  Fisher") estimate; xi is seeded per training example.
- **EK-FAC** (George et al. 2018): the eigenbases Q_A, Q_S of A and S, with the eigenvalues
  replaced by the exact second moments of the per-draw weight gradients in that basis,
  ``Lambda = E_r[(Q_S^T G_r Q_A)^2]`` (a second pass over the data).

In either basis the inverse is diagonal, so for every layer
``grad f^T (H + d I)^{-1} grad l = sum (Q_S^T G_f Q_A) (Q_S^T G_l Q_A) / (Lambda + d)``: the
rotated gradients of target and training example, weighted elementwise. Both sides are
computed rotated by :class:`RotatedGradients`; one pass over the training set then scores
every (variant, damping) pair at once (:func:`stream_scores`). The damping is
``d = factor x mean(Lambda)`` (all layers), the factor chosen on held-out subsets.

Coverage: every trainable Conv2d/Linear weight and bias. Other trainable parameters
(GroupNorm affine: about 0.1% of the default UNet) are left out and named in
:meth:`RotatedGradients.describe`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from stepattr.core.diffusion import add_noise, eps_model
from stepattr.core.names import INFLUENCE_VARIANTS
from stepattr.core.output_functions import OUTPUT_FUNCTIONS, output_value, train_draws
from stepattr.core.seeds import derive_seed
from stepattr.core.settings import settings_from
from stepattr.core.taps import Tap, tapped


@dataclass(frozen=True)
class InfluenceSettings:
    """The ``influence`` section (config/schema.yaml), typed once where a job starts.

    ``fit_draws`` None: attribution.train_timesteps; ``fit_examples`` None: every example;
    ``output_functions`` None: attribution.output_functions. Defaults: the schema's.
    """

    methods: tuple[str, ...]
    dampings: tuple[float, ...]
    fit_examples: int | None
    fit_draws: int | None
    batch_size: int
    seed: int
    output_functions: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> InfluenceSettings:
        return settings_from(cls, section, "influence")


KRONECKER_MODULES = (nn.Conv2d, nn.Linear)
VARIANTS = tuple(INFLUENCE_VARIANTS)
OUTPUT_SAMPLE = 11  # seed stream of the sampled output gradients xi (after core.seeds' tags)

# consumer of one layer's rows during backward: (layer index, a (N, M, d_in), g (N, M, d_out))
Consumer = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class KroneckerLayer:
    """A Conv2d/Linear layer as a ``d_out x d_in`` matrix (``d_in`` counts the bias's 1)."""

    name: str
    d_out: int
    d_in: int
    bias: bool


def kronecker_layers(model: nn.Module) -> tuple[list[KroneckerLayer], list[str]]:
    """The covered layers, and the names of the trainable parameters they do not cover.

    Raises, naming it, for a grouped conv or one that pads other than with zeros.
    """
    layers, covered = [], set()
    for name, module in model.named_modules():
        if not isinstance(module, KRONECKER_MODULES) or not module.weight.requires_grad:
            continue
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            raise ValueError(
                f"{name}: K-FAC needs groups = 1 and zero padding, got groups = "
                f"{module.groups}, padding_mode = {module.padding_mode!r}"
            )
        bias = module.bias is not None and module.bias.requires_grad
        d_in = module.weight[0].numel() + int(bias)
        layers.append(KroneckerLayer(name, module.weight.shape[0], d_in, bias))
        prefix = f"{name}." if name else ""
        covered.update({prefix + "weight", *([prefix + "bias"] if bias else [])})
    uncovered = [n for n, p in model.named_parameters() if p.requires_grad and n not in covered]
    return layers, uncovered


def _input_rows(module: nn.Module, x: torch.Tensor, bias: bool) -> torch.Tensor:
    """A layer's input as ``(N, M, d_in)`` rows: unfolded conv patches, 1 appended for a bias."""
    if isinstance(module, nn.Conv2d):
        rows = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        rows = rows.transpose(1, 2)
    else:
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
    if bias:
        rows = torch.cat([rows, rows.new_ones(*rows.shape[:2], 1)], dim=2)
    return rows


def _rotated_input_rows(
    module: nn.Module, x: torch.Tensor, bias: bool, q_in: torch.Tensor
) -> torch.Tensor:
    """``_input_rows(...) @ q_in`` without unfolding: for a conv, a conv whose kernels are
    the columns of ``q_in`` (the bias coordinate as its bias), ~3x faster on CPU."""
    weight_rows = q_in[:-1] if bias else q_in
    shift = q_in[-1] if bias else None
    if isinstance(module, nn.Conv2d):
        kernel = weight_rows.T.reshape(q_in.shape[1], *module.weight.shape[1:])
        out = F.conv2d(x, kernel, shift, module.stride, module.padding, module.dilation)
        return out.flatten(2).transpose(1, 2)
    rows = x.reshape(x.shape[0], -1, x.shape[-1]) @ weight_rows
    return rows if shift is None else rows + shift


def _grad_rows(module: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """A layer's output gradient as ``(N, M, d_out)`` rows."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)
    return g.reshape(g.shape[0], -1, g.shape[-1])


@contextmanager
def layer_taps(
    model: nn.Module,
    layers: Sequence[KroneckerLayer],
    consume: Consumer,
    in_rotations: Sequence[torch.Tensor] | None = None,
) -> Iterator[None]:
    """While open, every backward hands each layer's rows to ``consume``: its input rows
    (rotated by ``in_rotations[index]``, Q_A, where given) and its output-gradient rows
    (:func:`stepattr.core.taps.tapped`: parameters frozen meanwhile)."""

    def tap(index: int, layer: KroneckerLayer) -> Tap:
        module = model.get_submodule(layer.name)

        def backward(x: torch.Tensor, g: torch.Tensor) -> None:
            if in_rotations is None:
                a = _input_rows(module, x, layer.bias)
            else:
                a = _rotated_input_rows(module, x, layer.bias, in_rotations[index])
            consume(index, a, _grad_rows(module, g))

        return Tap(module, backward)

    with tapped(model, [tap(index, layer) for index, layer in enumerate(layers)]):
        yield


def rotated_gradients(g: torch.Tensor, a: torch.Tensor, q_out: torch.Tensor) -> torch.Tensor:
    """``Q_S^T (sum_rows g^T a)``: ``(N, d_out, d_in)`` from ``g (N, R, d_out)`` and input
    rows ``a (N, R, d_in)`` that are already rotated by Q_A (:func:`layer_taps`)."""
    return q_out.T @ torch.bmm(g.transpose(1, 2), a)


def _output_samples(seed: int, indices: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """xi ``(B, K, *shape)``: the sampled output directions, seeded per training example."""
    return torch.stack(
        [
            torch.randn(tuple(shape), generator=torch.Generator().manual_seed(
                derive_seed(seed, OUTPUT_SAMPLE, int(i))
            ))
            for i in indices
        ]
    )  # fmt: skip


def gauss_newton_passes(
    model: nn.Module,
    layers: Sequence[KroneckerLayer],
    consume: Consumer,
    images: torch.Tensor,
    indices: Sequence[int],
    num_draws: int,
    seed: int,
    alphas_cumprod: torch.Tensor,
    batch_size: int,
    desc: str,
    in_rotations: Sequence[torch.Tensor] | None = None,
) -> int:
    """Backpropagate ``<eps_hat_r, xi_r>`` for every draw r of every training image, handing
    the layers' rows to ``consume``; returns the number of rows (images x draws).

    The draws are the training draws of :mod:`stepattr.core.output_functions` (seeded by
    example), so fitting on a shard or another batch size gives the same rows.
    """
    param = next(model.parameters())
    eps = eps_model(model.eval())
    shape = images.shape[1:]
    with layer_taps(model, layers, consume, in_rotations):
        for start in tqdm(range(0, len(images), batch_size), desc=desc, mininterval=10):
            rows = list(indices[start : start + batch_size])
            ts, ns = train_draws(seed, rows, num_draws, shape, len(alphas_cumprod))
            xi = _output_samples(seed, rows, (num_draws, *shape))
            x0 = images[start : start + len(rows)].to(param.device, param.dtype)
            flat_x0 = x0.unsqueeze(1).expand(-1, num_draws, *shape).reshape(-1, *shape)
            flat_t = ts.reshape(-1).to(param.device)
            x_t = add_noise(flat_x0, ns.reshape(-1, *shape).to(flat_x0), flat_t, alphas_cumprod)
            out = eps(x_t, flat_t)
            out.backward(xi.reshape(out.shape).to(out))
    return len(images) * num_draws


@dataclass
class LayerBasis:
    """One layer's factors and eigenbases (float64 on the CPU, as saved)."""

    q_in: torch.Tensor  # (d_in, d_in) eigenvectors of A
    lam_in: torch.Tensor  # (d_in,)
    q_out: torch.Tensor  # (d_out, d_out) eigenvectors of S
    lam_out: torch.Tensor  # (d_out,)
    corrected: torch.Tensor  # (d_out, d_in) EK-FAC eigenvalues E[(Q_S^T G Q_A)^2]
    positions: int  # M: output positions per row

    def eigenvalues(self, variant: str) -> torch.Tensor:
        """``(d_out, d_in)`` diagonal of the layer's block in its eigenbasis."""
        if variant == "ekfac":
            return self.corrected
        if variant == "kfac":
            return torch.outer(self.lam_out, self.lam_in).clamp_min(0) / self.positions
        raise ValueError(f"unknown influence variant {variant!r}; expected one of {VARIANTS}")


def fit_bases(
    model: nn.Module,
    layers: Sequence[KroneckerLayer],
    images: torch.Tensor,
    indices: Sequence[int],
    num_draws: int,
    seed: int,
    alphas_cumprod: torch.Tensor,
    batch_size: int,
) -> list[LayerBasis]:
    """Both passes: the covariances A, S and their eigenbases, then EK-FAC's eigenvalues."""
    cov_in = [torch.zeros(la.d_in, la.d_in, dtype=torch.float64) for la in layers]
    cov_out = [torch.zeros(la.d_out, la.d_out, dtype=torch.float64) for la in layers]
    positions = [0] * len(layers)

    args = (images, indices, num_draws, seed, alphas_cumprod, batch_size)

    def count_positions(index: int, a: torch.Tensor, g: torch.Tensor) -> None:
        # a batch's sums in the model's dtype (float64 would be ~3x slower), summed in float64
        positions[index] = int(a.shape[1])
        a, g = a.flatten(0, 1), g.flatten(0, 1)
        cov_in[index] += (a.T @ a).double().cpu()
        cov_out[index] += (g.T @ g).double().cpu()

    rows = gauss_newton_passes(model, layers, count_positions, *args, desc="K-FAC factors")
    bases = []
    for index in range(len(layers)):
        lam_in, q_in = torch.linalg.eigh(cov_in[index] / rows)
        lam_out, q_out = torch.linalg.eigh(cov_out[index] / rows)
        bases.append(
            LayerBasis(
                q_in, lam_in.clamp_min(0), q_out, lam_out.clamp_min(0),
                torch.zeros(layers[index].d_out, layers[index].d_in, dtype=torch.float64),
                positions[index],
            )
        )  # fmt: skip
    param = next(model.parameters())
    rotations = [
        (b.q_out.to(param.device, param.dtype), b.q_in.to(param.device, param.dtype)) for b in bases
    ]

    def corrections(index: int, a: torch.Tensor, g: torch.Tensor) -> None:
        rotated = rotated_gradients(g, a, rotations[index][0])  # (N rows, d_out, d_in)
        bases[index].corrected += rotated.pow(2).sum(0).double().cpu()

    in_rotations = [q_in for _, q_in in rotations]
    gauss_newton_passes(
        model, layers, corrections, *args, desc="EK-FAC eigenvalues", in_rotations=in_rotations
    )
    for basis in bases:
        basis.corrected /= rows
    return bases


class RotatedGradients:
    """Per-example gradients of an output function, rotated into the K-FAC eigenbases.

    ``__call__(x0, timesteps, noises, mask) -> (B, p)``: for each layer ``Q_S^T G Q_A``
    flattened (C order), layers in order; G is the gradient of the output function summed
    over the example's draws. The drivers of :mod:`stepattr.trak.features` take it as a
    featurizer (``dim``, ``describe``), so its draws are TRAK's.
    """

    def __init__(
        self,
        model: nn.Module,
        output_function: str,
        alphas_cumprod: torch.Tensor,
        layers: Sequence[KroneckerLayer],
        bases: Sequence[LayerBasis],
        uncovered: Sequence[str] = (),
        draws_per_pass: int | None = None,
    ) -> None:
        if output_function not in OUTPUT_FUNCTIONS:
            raise ValueError(
                f"unknown output function {output_function!r}; expected one of {OUTPUT_FUNCTIONS}"
            )
        for layer, basis in zip(layers, bases, strict=True):
            if basis.corrected.shape != (layer.d_out, layer.d_in):
                raise ValueError(
                    f"{layer.name}: factors of shape {tuple(basis.corrected.shape)} do not fit "
                    f"the layer ({layer.d_out}, {layer.d_in}); they were fit on another model"
                )
        self.model = model.eval()
        self.output_function = output_function
        self.alphas_cumprod = alphas_cumprod
        self.layers = list(layers)
        self.uncovered = list(uncovered)
        self.draws_per_pass = draws_per_pass
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.rotations = [
            (b.q_out.to(param.device, param.dtype), b.q_in.to(param.device, param.dtype))
            for b in bases
        ]
        self.sizes = [layer.d_out * layer.d_in for layer in self.layers]
        self.dim = sum(self.sizes)

    def __call__(
        self,
        x0: torch.Tensor,
        timesteps: torch.Tensor,
        noises: torch.Tensor,
        mask: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, draws = timesteps.shape
        x0 = x0.to(self.device, self.dtype)
        timesteps, noises = timesteps.to(self.device), noises.to(self.device, self.dtype)
        mask = None if mask is None else mask.to(self.device, self.dtype)
        states = None if states is None else states.to(self.device, self.dtype)
        blocks = [x0.new_zeros(batch, la.d_out, la.d_in) for la in self.layers]

        def rotate(index: int, a: torch.Tensor, g: torch.Tensor) -> None:
            a = a.reshape(batch, -1, a.shape[-1])  # the rows of one example's draws together
            g = g.reshape(batch, -1, g.shape[-1])
            blocks[index] += rotated_gradients(g, a, self.rotations[index][0])

        step = draws if self.draws_per_pass is None else max(1, int(self.draws_per_pass))
        eps = eps_model(self.model)
        in_rotations = [q_in for _, q_in in self.rotations]
        with layer_taps(self.model, self.layers, rotate, in_rotations):
            for start in range(0, draws, step):
                part = slice(start, start + step)
                value = output_value(
                    eps, self.output_function, x0, timesteps[:, part], noises[:, part],
                    self.alphas_cumprod, mask, None if states is None else states[:, part],
                )  # fmt: skip
                value.sum().backward()
        return torch.cat([block.flatten(1) for block in blocks], dim=1)

    def describe(self) -> dict[str, Any]:
        return {
            "featurizer": "kfac_rotated_gradients",
            "output_function": self.output_function,
            "dim": self.dim,
            "layers": len(self.layers),
            "uncovered_parameters": self.uncovered,
        }


def eigenvalues(bases: Sequence[LayerBasis], variant: str) -> torch.Tensor:
    """``(p,)`` diagonal of a variant's Gauss-Newton block matrix in the rotated coordinates."""
    return torch.cat([basis.eigenvalues(variant).flatten() for basis in bases])


def inverse_weights(
    bases: Sequence[LayerBasis], combos: Sequence[tuple[str, float]]
) -> torch.Tensor:
    """``(C, p)``: ``1 / (Lambda + factor x mean(Lambda))`` per (variant, damping factor)."""
    rows = []
    for variant, factor in combos:
        lam = eigenvalues(bases, variant)
        damping = float(factor) * float(lam.mean())
        if damping <= 0:
            raise ValueError(
                f"damping {factor} x mean eigenvalue {float(lam.mean()):g} is not positive "
                "(influence.dampings must be positive; a zero mean means untrained factors)"
            )
        rows.append(1.0 / (lam + damping))
    return torch.stack(rows)


def stream_scores(
    rotated: RotatedGradients,
    queries: torch.Tensor,
    weights: torch.Tensor,
    images: torch.Tensor,
    indices: Sequence[int],
    num_draws: int,
    seed: int,
    num_train_timesteps: int,
    batch_size: int,
    timesteps: str = "uniform",
) -> np.ndarray:
    """Scores ``(C, Q, n)`` float32: ``queries (Q, p) @ (weights[c] * r_i)`` for every
    training image i, its rotated gradient r_i computed batch by batch and never stored; its
    draws are TRAK's (``timesteps``: :func:`stepattr.core.output_functions.train_draws`)."""
    device, dtype = rotated.device, rotated.dtype
    queries, weights = queries.to(device, dtype), weights.to(device, dtype)
    out = np.empty((weights.shape[0], queries.shape[0], len(images)), dtype=np.float32)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="influence scores", mininterval=10):
        stop = min(start + batch_size, len(images))
        ts, ns = train_draws(
            seed, indices[start:stop], num_draws, images.shape[1:], num_train_timesteps,
            timesteps,
        )  # fmt: skip
        r = rotated(images[start:stop], ts, ns)
        with torch.no_grad():
            for c in range(weights.shape[0]):
                out[c, :, start:stop] = (queries @ (r * weights[c]).T).float().cpu().numpy()
    return out
