"""Per-example gradients of an output function, flattened over all parameters.

TRAK needs one gradient per example (per training image, or per target and step), never one
per batch. ``torch.func`` computes them in one batched pass: ``vmap(grad(f))`` over examples,
where ``f`` is :func:`stepattr.core.output_functions.output_value` of a single example
evaluated through ``functional_call``. Each example carries its own J (timestep, noise) draws,
summed inside ``f``, so the gradient of an example is the gradient of its sum over draws.

Parameter order: :func:`parameter_names`, i.e. ``model.named_parameters()`` order (module
registration order), every parameter that requires grad. Row ``b`` of the result is the
concatenation of each parameter's gradient flattened in C order, in that order; a projector
matrix row ``j`` therefore always multiplies the same scalar parameter.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from stepattr.core.diffusion import use_plain_attention
from stepattr.core.output_functions import output_value


def parameter_names(model: torch.nn.Module) -> list[str]:
    """The fixed order in which parameters are flattened: ``named_parameters()`` order."""
    return [name for name, param in model.named_parameters() if param.requires_grad]


def num_parameters(model: torch.nn.Module) -> int:
    """Length of one flattened gradient."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    """Put a UNet in the state gradients are taken in: eval mode and vmap-friendly attention.

    Eval mode turns dropout off, so a feature is a deterministic function of its draws.
    diffusers' default attention calls ``scaled_dot_product_attention``, which has no vmap
    batching rule and falls back to a per-example loop; the plain matmul-softmax processor
    computes the same attention and batches. (The UNet's mid block always has attention.)
    """
    return use_plain_attention(model.eval())


def per_example_gradients(
    model: torch.nn.Module,
    kind: str,
    alphas_cumprod: torch.Tensor,
    x0: torch.Tensor,
    timesteps: torch.Tensor,
    noises: torch.Tensor,
    mask: torch.Tensor | None = None,
    draws_per_pass: int | None = None,
    states: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradients ``(B, p)`` of ``output_value`` for each of B examples.

    ``x0 (B,C,H,W)``, ``timesteps (B,J)``, ``noises (B,J,C,H,W)`` and the text-conditioned
    model's ``states (B,J,L,D)`` as for :func:`stepattr.core.output_functions.output_value`;
    ``mask`` is shared by all examples. The model must
    have gone through :func:`prepare_model`. One vmap pass holds the activations of B x
    ``draws_per_pass`` images (default: all J draws at once); the gradient of the sum over
    draws is accumulated over passes, so only one ``(B, p)`` gradient is ever formed. Callers
    bound memory through B and ``draws_per_pass``.
    """
    names = parameter_names(model)
    params = {name: param.detach() for name, param in model.named_parameters() if name in names}
    frozen = {name: param.detach() for name, param in model.named_parameters() if name not in names}
    buffers = {name: buf.detach() for name, buf in model.named_buffers()}
    state = {**frozen, **buffers}

    def single(p: dict[str, torch.Tensor], x, t, n, s=None) -> torch.Tensor:
        def eps(x_t: torch.Tensor, t_batch: torch.Tensor, st: torch.Tensor | None = None):
            kwargs = None if st is None else {"encoder_hidden_states": st}
            return functional_call(model, (p, state), (x_t, t_batch), kwargs).sample

        s = None if s is None else s[None]
        return output_value(eps, kind, x[None], t[None], n[None], alphas_cumprod, mask, s)[0]

    batched = vmap(grad(single), in_dims=(None, 0, 0, 0) + ((0,) if states is not None else ()))
    draws = timesteps.shape[1]
    step = draws if draws_per_pass is None else max(1, int(draws_per_pass))
    total: dict[str, torch.Tensor] = {}
    for start in range(0, draws, step):
        draws_now = slice(start, start + step)
        extra = () if states is None else (states[:, draws_now],)
        part = batched(params, x0, timesteps[:, draws_now], noises[:, draws_now], *extra)
        for name in names:
            total[name] = part[name] if name not in total else total[name].add_(part[name])
        del part
    return torch.cat([total.pop(name).reshape(x0.shape[0], -1) for name in names], dim=1)
