"""CLIP zero-shot feature detector (open_clip): P(prompt | image) over one prompt per class.

Weights come from a local file or from an open_clip pretrained tag that is already in the
local cache; nothing is ever downloaded. Where no weights are configured or the tag is not
cached, :func:`load_clip` raises :class:`ClipUnavailable` and the caller falls back to the
workflow's classifier.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

#: open_clip's file names for weights on the Hugging Face hub (pickle and safetensors).
HF_WEIGHTS = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS = "open_clip_model.safetensors"


class ClipUnavailable(RuntimeError):
    """No usable CLIP weights on this machine (none configured, or the tag is not cached)."""


def clip_prompts(clip_cfg: Mapping[str, Any], class_names: Sequence[str]) -> list[str]:
    """One prompt per class, in class order: ``clip.prompts`` or the template per class name."""
    prompts = clip_cfg.get("prompts")
    if prompts is None:
        return [clip_cfg["template"].format(name) for name in class_names]
    if len(prompts) != len(class_names):
        raise ValueError(
            f"clip.prompts has {len(prompts)} entries, but the dataset has {len(class_names)} "
            f"classes ({', '.join(class_names)}); give one prompt per class, in class order"
        )
    return [str(p) for p in prompts]


def cached_pretrained_file(model_name: str, tag: str, cache_dir: str | None = None) -> str | None:
    """Local file of an open_clip pretrained tag, or None where it is not cached.

    Looks where open_clip would download to (the Hugging Face cache, or ``~/.cache/clip`` for
    URL weights) without touching the network. Raises :class:`ClipUnavailable` for a tag
    that open_clip does not know for this model.
    """
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise ClipUnavailable(
            f"clip.weights = {tag!r} is neither a file nor an open_clip pretrained tag of "
            f"{model_name} (known tags: {', '.join(known) or 'none'})"
        )
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS
        candidates = [filename]
        if filename == HF_WEIGHTS:
            candidates.insert(0, HF_SAFE_WEIGHTS)
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            path = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    if cfg.get("url"):
        path = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(cfg["url"])
        if path.is_file():
            return str(path)
    return None


class ClipDetector:
    """Zero-shot classifier: softmax over the scaled cosine similarities to the prompts."""

    def __init__(
        self, model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], name: str
    ) -> None:
        self.model = model.eval()
        self.prompts = list(prompts)
        self.name = name
        device = next(model.parameters()).device
        with torch.no_grad():
            tokens = tokenizer(self.prompts).to(device)
            self.text_features = model.encode_text(tokens, normalize=True)
        pp = model.visual.preprocess_cfg
        size = pp["size"]
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(pp["mean"], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(pp["std"], device=device).view(1, -1, 1, 1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (N, 1 or 3, H, W) -> CLIP input (RGB, resized, normalised)."""
        x = (images.float() + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=self.size, mode="bicubic", align_corners=False).clamp(0, 1)
        return (x - self.mean) / self.std

    def predict_proba(self, images: np.ndarray | torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """P(prompt | image), shape (N, number of prompts)."""
        x = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"CLIP expects images (N, 1 or 3, H, W) in [-1, 1], got {tuple(x.shape)}"
            )
        device = self.text_features.device
        out = [torch.zeros((0, len(self.prompts)))]
        with torch.no_grad():
            scale = self.model.logit_scale.exp()
            for start in range(0, len(x), batch_size):
                batch = self.preprocess(x[start : start + batch_size].to(device))
                feats = self.model.encode_image(batch, normalize=True)
                logits = scale * feats @ self.text_features.T
                out.append(logits.softmax(dim=1).float().cpu())
        return torch.cat(out).numpy()


def load_clip(
    clip_cfg: Mapping[str, Any],
    class_names: Sequence[str],
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
) -> ClipDetector:
    """A CLIP detector for the config's ``clip`` section, or :class:`ClipUnavailable`.

    ``clip.weights`` is a local weights file (safetensors, or a torch checkpoint read with
    ``weights_only=True``) or a cached open_clip pretrained tag; a corrupt file is an error,
    not a fallback.
    """
    model_name, weights = clip_cfg["model"], clip_cfg.get("weights")
    if model_name not in open_clip.list_models():
        raise ValueError(f"clip.model = {model_name!r} is not an open_clip architecture")
    if weights is None:
        raise ClipUnavailable("clip.weights is null: no CLIP weights configured")
    kwargs: dict[str, Any] = {}
    if os.path.isfile(weights):
        path = weights
    else:
        path = cached_pretrained_file(model_name, weights, cache_dir=cache_dir)
        if path is None:
            raise ClipUnavailable(
                f"open_clip weights {model_name}/{weights} are not in the local cache, and this "
                "workflow never downloads them"
            )
        tag_cfg = open_clip.get_pretrained_cfg(model_name, weights)
        kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
        if "mean" in tag_cfg and "std" in tag_cfg:
            kwargs["force_preprocess_cfg"] = {"mean": tag_cfg["mean"], "std": tag_cfg["std"]}
    try:
        model = open_clip.create_model(
            model_name,
            pretrained=path,
            device=device,
            pretrained_image=False,
            pretrained_text=False,
            weights_only=True,
            **kwargs,
        )
    except Exception as err:  # open_clip raises RuntimeError, safetensors its own types
        raise ValueError(f"{path}: cannot load as open_clip {model_name} weights ({err})") from err
    tokenizer = open_clip.get_tokenizer(model_name)
    prompts = clip_prompts(clip_cfg, class_names)
    return ClipDetector(model, tokenizer, prompts, name=f"clip:{model_name}:{weights}")
