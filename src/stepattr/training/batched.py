"""Batched subset training: G shared-batch models of one seed, trained together in one job.

Subset models (LDS ground truth, counterfactual removals) share their seed, hence their
initial weights and their stream of batches, timesteps and noises; they differ only in which
examples of each batch they keep (shared batches, :mod:`stepattr.training`). So G of them can
run as one vectorised model: the parameters are stacked along a leading model axis, every
model's kept examples are gathered into a (G, L) block padded to the largest count L, and one
``torch.func.vmap`` of ``functional_call`` runs all G forward and backward passes together.
Each model's loss is the mean over its own kept examples, exactly as
:class:`stepattr.training.DiffusionTrainer` computes it; AdamW, gradient-norm clipping and the
EMA are applied per model (a model whose batch keeps no example skips the step, as there).
The result equals G one-model-at-a-time runs up to float rounding (tests/test_training.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.func import functional_call, vmap

from stepattr.core.diffusion import Schedule, add_noise, build_unet, use_plain_attention
from stepattr.core.seeds import MODEL_INIT, TRAIN_STEP, derive_seed
from stepattr.training.recipe import BatchOrder, TrainSettings, ema_decay_at, learning_rate_at

ADAM_BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, which DiffusionTrainer uses
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


def _per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (G,) vector shaped to broadcast against a stacked (G, ...) tensor."""
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class BatchedDiffusionTrainer:
    """G models of one seed, one keep mask each (bool, (G, N)), trained in lockstep (no I/O)."""

    def __init__(
        self,
        images: torch.Tensor,
        model_cfg: Mapping[str, Any],
        train: TrainSettings,
        schedule: Schedule,
        seed: int,
        device: torch.device,
        keep: torch.Tensor,
        total_steps: int | None = None,
    ) -> None:
        if keep.dtype != torch.bool or keep.dim() != 2 or keep.shape[1] != len(images):
            raise ValueError(
                f"keep must be a bool (models, {len(images)}) matrix, got {keep.dtype} "
                f"{tuple(keep.shape)}"
            )
        self.train, self.seed, self.device = train, int(seed), device
        self.total_steps = total_steps
        self.num_models = keep.shape[0]
        self.num_timesteps = schedule.num_train_timesteps
        _, channels, size, _ = images.shape
        torch.manual_seed(derive_seed(MODEL_INIT, self.seed))
        self.unet = use_plain_attention(build_unet(model_cfg, size, channels).to(device).train())
        self.names = [n for n, p in self.unet.named_parameters() if p.requires_grad]
        g = self.num_models
        start = dict(self.unet.named_parameters())
        self.params = {
            n: start[n].detach().unsqueeze(0).repeat(g, *[1] * start[n].dim()).requires_grad_()
            for n in self.names
        }
        self.buffers = {n: b for n, b in self.unet.named_buffers()}
        self.use_ema = train.ema_decay > 0
        self.ema = {n: p.detach().clone() for n, p in self.params.items()} if self.use_ema else {}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.adam_steps = torch.zeros(g, dtype=torch.float64)
        self.data = images.to(device)
        self.keep = keep.to(device)
        self.order = BatchOrder(len(images), train.batch_size, self.seed)
        self.alphas_cumprod = schedule.alphas_cumprod.to(device, torch.float32)
        self.examples_per_step = train.batch_size * float(keep.float().mean())
        self.step = 0

        def loss_of(params, x_t, t, noise, weight):
            pred = functional_call(self.unet, (params, self.buffers), (x_t, t)).sample
            per_example = (pred.float() - noise).pow(2).flatten(1).mean(dim=1)
            return (per_example * weight).sum()

        self._losses = vmap(loss_of, randomness="different")

    def learning_rate(self, step: int) -> float:
        return learning_rate_at(self.train, step, self.total_steps)

    def _gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (G, L) into the batch of each model's kept examples, padded, and their
        loss weights (G, L): 1 / count on real entries, 0 on padding."""
        kept = self.keep[:, idx]  # (G, B)
        counts = kept.sum(dim=1)
        width = max(int(counts.max()), 1)
        # stable sort puts each model's kept positions first, in batch order
        order = torch.sort((~kept).to(torch.uint8), dim=1, stable=True).indices[:, :width]
        real = torch.arange(width, device=idx.device)[None, :] < counts[:, None]
        weight = real.float() / counts.clamp(min=1)[:, None].float()
        return order, weight

    def train_step(self) -> torch.Tensor:
        """One optimizer step of every model; returns the (G,) batch losses (detached)."""
        step = self.step
        torch.manual_seed(derive_seed(TRAIN_STEP, self.seed, step))
        idx = torch.from_numpy(self.order.indices(step)).to(self.device)
        t = torch.randint(0, self.num_timesteps, (len(idx),), device=self.device)
        noise = torch.randn((len(idx), *self.data.shape[1:]), device=self.device)
        pos, weight = self._gather(idx)
        active = weight.sum(dim=1) > 0  # (G,): models whose batch keeps an example
        x0, t_g, noise_g = self.data[idx][pos], t[pos], noise[pos]
        x_t = add_noise(x0.flatten(0, 1), noise_g.flatten(0, 1), t_g.flatten(), self.alphas_cumprod)
        x_t = x_t.reshape(x0.shape)
        losses = self._losses(self.params, x_t, t_g, noise_g, weight)
        grads = torch.autograd.grad(losses.sum(), [self.params[n] for n in self.names])
        self._update(dict(zip(self.names, grads, strict=True)), active, step)
        self.step += 1
        return losses.detach()

    @torch.no_grad()
    def _update(self, grads: dict[str, torch.Tensor], active: torch.Tensor, step: int) -> None:
        """Per-model gradient clipping, AdamW (decoupled weight decay) and EMA; models not
        ``active`` keep their weights, moments, Adam step count and EMA unchanged."""
        clip = self.train.grad_clip
        if clip:
            sq = sum(g.pow(2).flatten(1).sum(dim=1) for g in grads.values())
            coef = (clip / (sq.sqrt() + CLIP_EPS)).clamp(max=1.0)
            grads = {n: g * _per_model(coef, g) for n, g in grads.items()}
        lr, wd = self.learning_rate(step), self.train.weight_decay
        beta1, beta2 = ADAM_BETAS
        self.adam_steps += active.cpu().double()
        n_step = self.adam_steps.clamp(min=1)
        step_size = torch.tensor([lr / (1 - beta1**s) for s in n_step.tolist()])
        bias2_sqrt = torch.tensor([math.sqrt(1 - beta2**s) for s in n_step.tolist()])
        on = active.to(self.device)
        decay = ema_decay_at(self.train.ema_decay, step) if self.use_ema else 0.0
        for n in self.names:
            p, g = self.params[n], grads[n]
            mask = _per_model(on, p)
            m, v = self.exp_avg[n], self.exp_avg_sq[n]
            new_m = m.lerp(g, 1 - beta1)
            new_v = v * beta2 + (1 - beta2) * g * g
            denom = new_v.sqrt() / _per_model(bias2_sqrt.to(self.device), p) + ADAM_EPS
            new_p = p * (1 - lr * wd) - _per_model(step_size.to(self.device), p) * new_m / denom
            m.copy_(torch.where(mask.bool(), new_m, m))
            v.copy_(torch.where(mask.bool(), new_v, v))
            p.copy_(torch.where(mask.bool(), new_p, p))
            if self.use_ema:
                e = self.ema[n]
                e.copy_(torch.where(mask.bool(), e.lerp(p, 1 - decay), e))

    def model(self, index: int, ema: bool = True) -> torch.nn.Module:
        """Model ``index`` as a UNet module (its EMA weights when enabled and ``ema``)."""
        source = self.ema if (ema and self.use_ema) else self.params
        unet = build_unet_like(self.unet)
        unet.load_state_dict(
            {n: v[index].detach().clone() for n, v in source.items()}
            | {n: b.clone() for n, b in self.buffers.items()},
            strict=True,
        )
        return unet.eval()

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "params": {n: p.detach().clone() for n, p in self.params.items()},
            "ema": self.ema,
            "exp_avg": self.exp_avg,
            "exp_avg_sq": self.exp_avg_sq,
            "adam_steps": self.adam_steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for n in self.names:
                self.params[n].copy_(state["params"][n])
                self.exp_avg[n].copy_(state["exp_avg"][n])
                self.exp_avg_sq[n].copy_(state["exp_avg_sq"][n])
                if self.use_ema:
                    self.ema[n].copy_(state["ema"][n])
        self.adam_steps = state["adam_steps"].clone().double()
        self.step = int(state["step"])


def build_unet_like(unet: torch.nn.Module) -> torch.nn.Module:
    """A fresh UNet of the same architecture (diffusers' config round trip)."""
    return type(unet).from_config(unet.config).to(next(unet.parameters()).device)
