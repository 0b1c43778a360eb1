"""Feature detectors for the transition curves: which class does an image show?

A detector maps images in [-1, 1] to class probabilities (N, num_classes), classes in the
dataset's order, so its argmax can be compared with training labels. Two kinds: CLIP
zero-shot prompts where CLIP weights load, else the workflow's own classifier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from stepattr.detectors.classifier import load_classifier, predict_proba
from stepattr.detectors.clip import ClipUnavailable, load_clip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detector:
    """A named image -> class-probability function."""

    name: str
    class_names: list[str]
    predict_proba: Callable[[np.ndarray | torch.Tensor], np.ndarray]

    def classify(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Most probable class per image, int64 (N,)."""
        return self.predict_proba(images).argmax(axis=1).astype(np.int64)


def load_detector(
    choice: str,
    classifier_dir: str | os.PathLike,
    clip_cfg: Mapping[str, Any],
    device: str | torch.device = "cpu",
) -> Detector:
    """The detector that ``transitions.detector`` asks for.

    ``auto`` takes CLIP where its weights load and otherwise logs why not and takes the
    classifier; ``clip`` without usable weights is an error; ``classifier`` never tries CLIP.
    Class names come from the classifier, which was trained on the dataset.
    """
    if choice not in ("auto", "clip", "classifier"):
        raise ValueError(f"transitions.detector = {choice!r}: expected auto, clip or classifier")
    classifier = load_classifier(classifier_dir, device=device)
    names = list(classifier.class_names)
    if choice != "classifier":
        try:
            clip = load_clip(clip_cfg, names, device=device)
        except ClipUnavailable as err:
            if choice == "clip":
                raise ValueError(f"transitions.detector = clip, but {err}") from err
            log.warning("CLIP detector unavailable (%s); using the workflow's classifier", err)
        else:
            log.info("feature detector: %s, prompts %s", clip.name, clip.prompts)
            return Detector(clip.name, names, clip.predict_proba)
    log.info("feature detector: the workflow's classifier (%s)", classifier_dir)
    return Detector("classifier", names, partial(predict_proba, classifier))
