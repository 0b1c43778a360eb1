"""Typed settings (stepattr.core.settings): every shipped config builds every typed section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from stepattr.core.settings import settings_from
from stepattr.detectors.classifier import ClassifierSettings
from stepattr.latents.autoencoder import AutoencoderSettings
from stepattr.stable_diffusion.effect import EffectSettings
from stepattr.stable_diffusion.pretrained_curves import PipelineTransitionsSettings
from stepattr.text.encoder import TextEncoderSettings
from stepattr.training.recipe import TrainSettings
from stepattr.transitions.curves import TransitionsSettings
from stepattr.workflow.configs import load_config

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {
    ("train",): TrainSettings,
    ("classifier",): ClassifierSettings,
    ("autoencoder",): AutoencoderSettings,
    ("text_encoder",): TextEncoderSettings,
    ("transitions",): TransitionsSettings,
    ("pipeline", "effect"): EffectSettings,
    ("pipeline", "transitions"): PipelineTransitionsSettings,
}


@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_config_gives_typed_settings(overlay: str) -> None:
    if overlay == "schema.yaml":
        pytest.skip("the schema is no config")
    cfg = load_config([REPO / "config" / overlay])
    for path, cls in SECTIONS.items():
        section = cfg
        for key in path:
            section = section[key]
        # raises on a key the dataclass lacks or a value its field type cannot take
        cls.from_config(section)


@dataclass(frozen=True)
class Example:
    n: int
    rate: float
    widths: tuple[int, ...]
    limit: float | None = None


def test_settings_are_converted_by_field_type_and_unknown_keys_refused() -> None:
    made = settings_from(Example, {"n": "3", "rate": "1e-3", "widths": [1, "2"]}, "example")
    assert made == Example(3, 0.001, (1, 2), None)
    assert settings_from(Example, {"n": 1, "rate": 1, "widths": [], "limit": 2}, "x").limit == 2.0
    with pytest.raises(ValueError, match=r"example: unknown keys \['m'\]"):
        settings_from(Example, {"n": 1, "rate": 1.0, "widths": [], "m": 0}, "example")
