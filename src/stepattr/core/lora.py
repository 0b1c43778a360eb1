"""LoRA models (the Stable Diffusion family): a pretrained pipeline's frozen UNet with peft LoRA
adapters on its attention projections, as diffusers' own LoRA training sets them up.

A LoRA model is described by a spec ``{"base": <the pipeline's unet/ folder>, "lora": {rank,
alpha, target_modules}}`` that stands where a pixel model's ``model`` section does: training
builds it (:func:`build_lora_unet`), :func:`stepattr.core.diffusion.save_model` writes only its
adapter weights (the ``lora_`` tensors; the base is named by its folder and the SHA-256 of its
weights, never copied: a Stable Diffusion UNet is 3.4 GB, its LoRA a few MB), and
:func:`stepattr.core.diffusion.load_model` rebuilds it. Only the adapter weights require
gradients, so per-example features (``stepattr.trak.gradients``) are taken with respect to
the LoRA parameters, as D-TRAK's ArtBench protocol does. LoRA's B matrices start at zero: an
untrained LoRA model is its base.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stepattr.core.io import sha256_file

#: the substring that marks adapter tensors in a peft-injected state dict
LORA_KEY = "lora_"
#: a LoRA model's base UNet weights, inside the base folder
BASE_WEIGHTS = "diffusion_pytorch_model.safetensors"


def is_lora_spec(model_cfg: Mapping[str, Any]) -> bool:
    """Whether a model description is a LoRA spec (a base folder plus adapters)."""
    return "base" in model_cfg


def check_lora(lora_cfg: Mapping[str, Any], where: str = "pipeline.lora") -> None:
    """A rank below 1, a non-positive alpha or no target module is refused by name."""
    if int(lora_cfg["rank"]) < 1:
        raise ValueError(f"{where}.rank = {lora_cfg['rank']}: a LoRA rank must be at least 1")
    if float(lora_cfg["alpha"]) <= 0:
        raise ValueError(f"{where}.alpha = {lora_cfg['alpha']} must be positive")
    if not lora_cfg.get("target_modules"):
        raise ValueError(f"{where}.target_modules is empty: name the layers that get adapters")


def load_base_unet(base: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """A pipeline's ``unet/`` folder, safetensors only, never from the hub; frozen."""
    from diffusers import UNet2DConditionModel

    base = Path(base)
    try:
        kind = json.loads((base / "config.json").read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError):
        kind = None
    if kind != "UNet2DConditionModel" or not (base / BASE_WEIGHTS).is_file():
        raise ValueError(
            f"pipeline.path: {base} is not a UNet folder (needs a UNet2DConditionModel's "
            f"config.json and {BASE_WEIGHTS})"
        )
    unet = UNet2DConditionModel.from_pretrained(
        str(base), use_safetensors=True, local_files_only=True
    )
    return unet.requires_grad_(False).to(device)


def add_lora(unet: torch.nn.Module, lora_cfg: Mapping[str, Any]) -> torch.nn.Module:
    """Inject LoRA adapters (peft) into ``unet`` in place; only they require gradients.

    Seed torch before calling: the A matrices are drawn at random (B starts at zero).
    """
    from peft import LoraConfig

    check_lora(lora_cfg)
    unet.requires_grad_(False)
    config = LoraConfig(
        r=int(lora_cfg["rank"]),
        lora_alpha=float(lora_cfg["alpha"]),
        target_modules=[str(m) for m in lora_cfg["target_modules"]],
        init_lora_weights=True,
    )
    try:
        unet.add_adapter(config)
    except ValueError as err:  # peft: no module matched
        raise ValueError(
            f"pipeline.lora.target_modules = {list(lora_cfg['target_modules'])}: {err}"
        ) from err
    return unet


def build_lora_unet(spec: Mapping[str, Any], device: str | torch.device = "cpu") -> Any:
    """The base UNet of ``spec`` with fresh adapters (seed torch first)."""
    return add_lora(load_base_unet(spec["base"], device), spec["lora"])


def lora_state_dict(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors of a LoRA model (what its ``model.safetensors`` holds)."""
    return {k: v for k, v in unet.state_dict().items() if LORA_KEY in k}


def lora_meta(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What a saved LoRA model's config.json records of its spec: the base folder, the
    SHA-256 of the base weights (:func:`check_base` refuses a changed base) and the adapters."""
    base = Path(spec["base"])
    return {
        "base": str(base),
        "base_sha256": sha256_file(base / BASE_WEIGHTS),
        "lora": dict(spec["lora"]),
    }


def check_base(meta: Mapping[str, Any], where: str) -> None:
    """The base a saved LoRA model names must be the one it was trained on: a base whose
    weights changed since (a re-downloaded or edited pipeline) is refused, naming both."""
    weights = Path(meta["base"]) / BASE_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"{where}: its base UNet {weights} is missing")
    if sha256_file(weights) != meta["base_sha256"]:
        raise ValueError(
            f"{where}: its base UNet {weights} is not the one it was trained on (SHA-256 "
            f"differs from the recorded {meta['base_sha256'][:12]}...); retrain the LoRA model"
        )


def load_lora_weights(unet: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load adapter tensors into a LoRA model; a missing or extra adapter names ``where``."""
    expected = set(lora_state_dict(unet))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(
            f"{where}: LoRA weights do not match the model's adapters "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    unet.load_state_dict(dict(state), strict=False)
