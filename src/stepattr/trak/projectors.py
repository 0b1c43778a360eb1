"""Random projections ``phi = P^T g`` from p parameters down to k features.

A projector is any object with ``num_params``, ``dim``, ``project(grads (B, p)) -> (B, k)`` and
``describe()`` (the :class:`Projector` protocol); the featurizer only calls these, so a
projector can be swapped without touching the rest of the pipeline.

Every projector here scales P by ``1 / sqrt(k)`` (entries +-1/sqrt(k) or N(0, 1/k)), so
``E[P P^T] = I`` and ``phi^T phi`` estimates ``g^T g`` whatever k is: the ridge lambda keeps
its meaning when k changes.

- :class:`TorchProjector`: P generated block by block (``BLOCK_ROWS`` rows of P each) from CPU
  generators seeded by (seed, block), so one seed gives the same matrix on CPU and GPU, and
  any block can be regenerated alone. The whole matrix is kept on the device when it fits in
  ``cache_bytes``; otherwise each call regenerates the blocks (slow, but bounded memory).
- :class:`FastJLProjector`: MadryLab's ``fast_jl`` CUDA kernels (the upstream recipe). Its
  matrix comes from the kernel's own generator: a different P than the torch projector's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from pathlib import Path
from typing import Any, Protocol

import torch

from stepattr.core.seeds import derive_seed

PROJECTION_KINDS = ("rademacher", "normal")
BLOCK_ROWS = 4096
FAST_JL_MULTIPLE = 512

log = logging.getLogger(__name__)


class Projector(Protocol):
    """What the featurizer needs from a projection."""

    num_params: int
    dim: int

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """``(B, p) -> (B, k)`` on the gradients' device."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the matrix (kind, seed, sizes): features agree only if equal."""
        ...


def projection_seed(seed: int, model_id: str) -> int:
    """Seed of one model's matrix: config ``attribution.seed`` combined with the model id.

    31 bits, so that it also fits fast_jl's ``uint32`` seed argument.
    """
    digest = hashlib.sha256(f"{int(seed)}/{model_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class TorchProjector:
    """Dense Rademacher or Gaussian projection in row blocks from seeded CPU generators."""

    def __init__(
        self,
        num_params: int,
        dim: int,
        kind: str = "rademacher",
        seed: int = 0,
        device: str | torch.device = "cpu",
        cache_bytes: int = 2**32,
    ) -> None:
        if kind not in PROJECTION_KINDS:
            raise ValueError(
                f"unknown projection kind {kind!r}; expected one of {PROJECTION_KINDS}"
            )
        if num_params < 1 or dim < 1:
            raise ValueError(f"projection sizes must be positive (p = {num_params}, k = {dim})")
        self.num_params, self.dim, self.kind, self.seed = int(num_params), int(dim), kind, int(seed)
        self.device = torch.device(device)
        self.num_blocks = math.ceil(self.num_params / BLOCK_ROWS)
        self._cache: list[torch.Tensor] | None = None
        self._cacheable = self.num_params * self.dim * 4 <= cache_bytes
        if not self._cacheable:
            log.warning(
                "the %d x %d projection matrix exceeds %d bytes: it is regenerated on the CPU "
                "for every batch (slow; on CUDA, projector auto uses fast_jl)",
                self.num_params,
                self.dim,
                cache_bytes,
            )

    def block(self, index: int) -> torch.Tensor:
        """Rows ``[index * BLOCK_ROWS, ...)`` of P, float32 on the CPU."""
        rows = min(BLOCK_ROWS, self.num_params - index * BLOCK_ROWS)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, index))
        if self.kind == "rademacher":
            block = torch.randint(0, 2, (rows, self.dim), generator=gen, dtype=torch.float32)
            block.mul_(2).sub_(1)
        else:
            block = torch.randn((rows, self.dim), generator=gen, dtype=torch.float32)
        return block.div_(math.sqrt(self.dim))

    def matrix(self) -> torch.Tensor:
        """The explicit ``(p, k)`` matrix (for tests and small models)."""
        return torch.cat([self.block(i) for i in range(self.num_blocks)])

    def _blocks(self):
        if self._cache is not None:
            yield from self._cache
            return
        blocks = (self.block(i).to(self.device) for i in range(self.num_blocks))
        if not self._cacheable:
            yield from blocks
            return
        cache = []
        for block in blocks:
            cache.append(block)
            yield block
        self._cache = cache

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """``grads (B, p) -> grads @ P (B, k)`` in the gradients' dtype."""
        if grads.dim() != 2 or grads.shape[1] != self.num_params:
            raise ValueError(f"expected gradients (B, {self.num_params}), got {tuple(grads.shape)}")
        out = torch.zeros(grads.shape[0], self.dim, dtype=grads.dtype, device=grads.device)
        for i, block in enumerate(self._blocks()):
            start = i * BLOCK_ROWS
            out.addmm_(
                grads[:, start : start + block.shape[0]], block.to(grads.device, grads.dtype)
            )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "projector": f"torch_{self.kind}",
            "seed": self.seed,
            "dim": self.dim,
            "num_params": self.num_params,
        }


def fast_jl_available() -> bool:
    """Whether the fast_jl CUDA extension imports (it needs a CUDA build of torch)."""
    try:
        import fast_jl  # noqa: F401
    except ImportError:
        return False
    return True


#: where envs/install-fast-jl.sh records, inside a conda env, what it installed or why not
FAST_JL_RECORD = Path(sys.prefix) / "etc" / "stepattr-fast-jl.txt"


def auto_choice(device: str | torch.device, dim: int) -> tuple[bool, str]:
    """Whether ``attribution.projector: auto`` uses fast_jl on ``device`` at k = ``dim``, and
    why (or why not): the device, k, or fast_jl not importing (with what the env's fast_jl
    install recorded, where it ran)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"device {device.type}: fast_jl runs on CUDA only"
    if dim % FAST_JL_MULTIPLE:
        return False, f"attribution.proj_dim = {dim} is not a multiple of {FAST_JL_MULTIPLE}"
    if not fast_jl_available():
        why = "fast_jl does not import"
        if FAST_JL_RECORD.is_file():
            why += f" (the env's fast_jl install: {FAST_JL_RECORD.read_text().strip()})"
        else:
            why += " (install it with envs/install-fast-jl.sh)"
        return False, why
    return True, "CUDA, fast_jl imports and proj_dim is a multiple of 512"


class FastJLProjector:
    """fast_jl's fused CUDA projection (inputs are rounded to fp16 inside the kernel)."""

    def __init__(
        self, num_params: int, dim: int, kind: str = "rademacher", seed: int = 0, device="cuda"
    ) -> None:
        if kind not in PROJECTION_KINDS:
            raise ValueError(
                f"unknown projection kind {kind!r}; expected one of {PROJECTION_KINDS}"
            )
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"fast_jl runs on CUDA only, not on {self.device}")
        if dim % FAST_JL_MULTIPLE:
            raise ValueError(f"fast_jl needs attribution.proj_dim divisible by 512, got {dim}")
        import fast_jl

        self._fast_jl = fast_jl
        self.num_params, self.dim, self.kind, self.seed = int(num_params), int(dim), kind, int(seed)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self._num_sms = torch.cuda.get_device_properties(index).multi_processor_count

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        if grads.dim() != 2 or grads.shape[1] != self.num_params:
            raise ValueError(f"expected gradients (B, {self.num_params}), got {tuple(grads.shape)}")
        batch = grads.shape[0]
        width = 8 if batch <= 8 else 16 if batch <= 16 else 32
        kernel = getattr(self._fast_jl, f"project_{self.kind}_{width}")
        if grads.dtype not in (torch.float16, torch.float32):
            grads = grads.float()
        out = kernel(grads.contiguous(), self.dim, self.seed, self._num_sms)
        return out.div_(math.sqrt(self.dim))

    def describe(self) -> dict[str, Any]:
        return {
            "projector": f"fast_jl_{self.kind}",
            "seed": self.seed,
            "dim": self.dim,
            "num_params": self.num_params,
        }


def make_projector(
    name: str, num_params: int, dim: int, seed: int, device: str | torch.device
) -> Projector:
    """Config ``attribution.projector`` -> a projector.

    ``auto`` picks fast_jl Rademacher when the device is CUDA, fast_jl imports and k is a
    multiple of 512, else the torch Rademacher projector; ``rademacher`` and ``normal`` always
    use the torch projector, whose matrix is the same on CPU and GPU.
    """
    device = torch.device(device)
    if name == "auto":
        use_fast_jl, why = auto_choice(device, dim)
        if use_fast_jl:
            return FastJLProjector(num_params, dim, "rademacher", seed, device)
        if device.type == "cuda":  # the GPU run the user expects fast_jl in: say why not
            log.warning("projector auto: the torch Rademacher projector, not fast_jl: %s", why)
        return TorchProjector(num_params, dim, "rademacher", seed, device)
    if name in PROJECTION_KINDS:
        return TorchProjector(num_params, dim, name, seed, device)
    raise ValueError(
        f"attribution.projector = {name!r} is not a dense projector "
        f"(expected auto, {', '.join(PROJECTION_KINDS)})"
    )
