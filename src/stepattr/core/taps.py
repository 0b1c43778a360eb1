"""Layer taps: a layer's input and its output gradient, handed over together during backward.

A weight's per-example gradient is made of exactly these two (``g^T a`` for a linear layer, its
unfolded form for a conv), so factored TRAK (:mod:`stepattr.trak.factored`) and K-FAC /
EK-FAC (:mod:`stepattr.influence.kfac`) both run on taps instead of weight gradients: a tap
keeps what it needs of the input at forward time and receives the output gradient at backward
time, while the parameters are frozen and no weight gradient is computed at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Tap:
    """What to take from one layer: ``keep(input)`` at forward (without grad), then
    ``backward(kept, output_gradient)`` during backward."""

    module: nn.Module
    backward: Callable[[Any, torch.Tensor], None]
    keep: Callable[[torch.Tensor], Any] = torch.Tensor.detach


def watch_gradient(output: torch.Tensor, hook: Callable[[torch.Tensor], None]) -> torch.Tensor:
    """Call ``hook(grad)`` with the gradient of a layer output during backward.

    An output that needs no grad (nothing upstream requires grad, e.g. the first conv or the
    time embedding while parameters are frozen) is replaced by a leaf that does: nothing
    upstream needs its gradient, and its own is what the hook wants.
    """
    if not output.requires_grad:
        output = output.detach().requires_grad_()
    output.register_hook(hook)
    return output


def _forward_hook(tap: Tap) -> Callable:
    def forward(_module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            kept = tap.keep(args[0])
        return watch_gradient(output, partial(tap.backward, kept))

    return forward


@contextmanager
def tapped(model: nn.Module, taps: Sequence[Tap]) -> Iterator[None]:
    """While open, every backward through ``model`` feeds each tap; the parameters are frozen
    meanwhile (restored on exit, also on an error)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    handles = []
    try:
        for param in trainable:
            param.requires_grad_(False)
        handles = [tap.module.register_forward_hook(_forward_hook(tap)) for tap in taps]
        yield
    finally:
        for handle in handles:
            handle.remove()
        for param in trainable:
            param.requires_grad_(True)
