"""The workflow's own image classifier: a feature detector for transitions and an embedding.

A small CNN trained on the dataset's train split, in model space ([-1, 1]). It serves twice:
as the feature detector of the transition curves (which class does a completion show?) when
no CLIP weights are available, and as the embedding of the embedding-similarity baseline
(its penultimate layer). Saved as ``model.safetensors`` + ``config.json`` like the UNets.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import atomic_path, load_weights, save_json, sha256_file
from stepattr.core.settings import settings_from


class ConvClassifier(nn.Module):
    """Conv stages (two 3x3 conv + BN + ReLU, then 2x2 max-pool) -> embedding -> linear head."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        embed_dim: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        factor = 2 ** len(channels)
        if image_size % factor:
            raise ValueError(
                f"classifier.channels has {len(channels)} pooling stages, so the image size "
                f"must be divisible by {factor}; dataset.image_size = {image_size} is not"
            )
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                ]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = image_size // factor
        self.embedding = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * side * side, embed_dim), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
        self.in_channels = in_channels
        self.image_size = image_size
        self.class_names: list[str] = [str(i) for i in range(num_classes)]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (after ReLU), shape (N, embed_dim)."""
        return self.embedding(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.embed(x))


@dataclass(frozen=True)
class ClassifierSettings:
    """The ``classifier`` section (config/schema.yaml), typed once where its job starts."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    channels: tuple[int, ...]
    embed_dim: int
    dropout: float
    max_shift: int
    threads: int
    seed: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> ClassifierSettings:
        return settings_from(cls, section, "classifier")


def architecture(
    settings: ClassifierSettings, in_channels: int, image_size: int, num_classes: int
) -> dict[str, Any]:
    """Constructor arguments of :class:`ConvClassifier` for the ``classifier`` settings."""
    return {
        "in_channels": int(in_channels),
        "image_size": int(image_size),
        "num_classes": int(num_classes),
        "channels": list(settings.channels),
        "embed_dim": settings.embed_dim,
        "dropout": settings.dropout,
    }


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels each way (edges replicated)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _accuracy_by_class(
    predictions: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        out[name] = float((predictions[mask] == c).mean()) if mask.any() else None
    return out


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
    cfg: ClassifierSettings,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[ConvClassifier, dict[str, Any]]:
    """Train on uint8 images (N, C, H, W); return the model (eval mode) and its metrics.

    Adam with cosine learning-rate decay, random shifts as the only augmentation; every
    random choice (initialisation, batch order, shifts) follows ``cfg.seed``.
    """
    _check_labels(train_labels, len(class_names), "train")
    _check_labels(test_labels, len(class_names), "test")
    seed = cfg.seed
    torch.manual_seed(seed)
    arch = architecture(cfg, train_images.shape[1], train_images.shape[-1], len(class_names))
    model = ConvClassifier(**arch).to(device)
    model.class_names = [str(c) for c in class_names]
    x_train = to_model_space(train_images)
    y_train = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    batch_size, epochs = cfg.batch_size, cfg.epochs
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=epochs * steps_per_epoch
    )
    history = []
    for epoch in tqdm(range(epochs), desc="epochs", disable=not progress):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = random_shift(x_train[idx], cfg.max_shift, generator).to(device)
            y = y_train[idx].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
        history.append({"epoch": epoch + 1, "loss": loss_sum / total, "accuracy": correct / total})
        if progress:
            print(
                f"epoch {epoch + 1}: loss {loss_sum / total:.4f}, train acc {correct / total:.4f}"
            )
    model.eval()
    test_pred = predict_proba(model, to_model_space(test_images)).argmax(1)
    labels = np.asarray(test_labels)
    metrics = {
        "test_accuracy": float((test_pred == labels).mean()),
        "per_class_accuracy": _accuracy_by_class(test_pred, labels, class_names),
        "n_train": int(len(train_labels)),
        "n_test": int(len(labels)),
        "epochs": epochs,
        "seed": seed,
        "history": history,
    }
    return model, metrics


def train_and_save_classifier(
    train_path: str | os.PathLike,
    test_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: ClassifierSettings,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train on a dataset split, write model, config and metrics.json; return the metrics."""
    x_train, y_train, names = load_split(train_path)
    x_test, y_test, test_names = load_split(test_path)
    if list(test_names) != list(names):
        raise ValueError(f"{test_path}: class names {test_names} differ from {train_path}: {names}")
    model, metrics = train_classifier(
        x_train, y_train, x_test, y_test, names, cfg, device=device, progress=True
    )
    inputs = {str(p): sha256_file(p) for p in (train_path, test_path)}
    arch = architecture(cfg, x_train.shape[1], x_train.shape[-1], len(names))
    config = asdict(cfg) | {"channels": list(cfg.channels)}
    save_classifier(out_dir, model, arch, info={"config": config, "inputs": inputs})
    metrics = {**metrics, "config": config, "inputs": inputs}
    save_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def _check_labels(labels: np.ndarray, num_classes: int, split: str) -> None:
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{split} labels lie in [{labels.min()}, {labels.max()}], outside the "
            f"{num_classes} class names"
        )


def save_classifier(
    directory: str | os.PathLike,
    model: ConvClassifier,
    arch: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.safetensors`` and ``config.json`` (architecture, class names, provenance)."""
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    save_json(
        directory / "config.json",
        {"architecture": dict(arch), "class_names": model.class_names, "info": dict(info or {})},
    )


def load_classifier(
    directory: str | os.PathLike, device: str | torch.device = "cpu"
) -> ConvClassifier:
    """Load a classifier written by :func:`save_classifier`, in eval mode.

    A missing, corrupt or mismatched file raises ``ValueError`` naming it.
    """
    directory = Path(directory)
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    try:
        meta = json.loads(cfg_path.read_text())
        model = ConvClassifier(**meta["architecture"])
        model.class_names = [str(c) for c in meta["class_names"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"{cfg_path}: not a classifier config written by this workflow ({err})"
        ) from err
    load_weights(model, weights, cfg_path)
    return model.to(device).eval()


def _batched(
    model: ConvClassifier,
    images: np.ndarray | torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    width: int,
    batch_size: int,
) -> np.ndarray:
    """Apply ``fn`` to images in batches, in eval mode and without gradients; (N, width)."""
    x = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
    expected = (model.in_channels, model.image_size, model.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"classifier expects images of shape (N, {', '.join(map(str, expected))}) in [-1, 1], "
            f"got {tuple(x.shape)}"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [torch.zeros((0, width))]
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(fn(x[start : start + batch_size].to(device, torch.float32)).cpu())
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float32)


def predict_proba(
    model: ConvClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """Class probabilities (N, num_classes) of images (N, C, H, W) in [-1, 1]."""
    return _batched(
        model,
        images,
        lambda x: F.softmax(model(x), dim=1),
        model.head[-1].out_features,
        batch_size,
    )


def embed(
    model: ConvClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """Penultimate-layer embedding (N, embed_dim) of images (N, C, H, W) in [-1, 1]."""
    return _batched(model, images, model.embed, model.head[-1].in_features, batch_size)
