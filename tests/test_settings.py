"""Typed settings (stepattr.core.settings): every shipped config builds every typed section."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from stepattr.core.settings import settings_from
from stepattr.counterfactual.removal import CounterfactualPair, CounterfactualSettings
from stepattr.detectors.classifier import ClassifierSettings
from stepattr.figures.patches import FiguresSettings
from stepattr.influence.kfac import InfluenceSettings
from stepattr.latents.autoencoder import AutoencoderSettings
from stepattr.lds.metric import LdsSettings
from stepattr.stable_diffusion.effect import EffectSettings
from stepattr.stable_diffusion.pretrained_curves import PipelineTransitionsSettings
from stepattr.text.encoder import TextEncoderSettings
from stepattr.training.recipe import TrainSettings
from stepattr.trak.features import AttributionSettings
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
    ("attribution",): AttributionSettings,
    ("influence",): InfluenceSettings,
    ("lds",): LdsSettings,
    ("counterfactual",): CounterfactualSettings,
    ("figures",): FiguresSettings,
}
# every shipped config: the overlays of config/ and config/regimes/, each over the default
CONFIGS = sorted(
    str(p.relative_to(REPO / "config"))
    for p in (REPO / "config").rglob("*.yaml")
    if p.name != "schema.yaml"
)


def section_of(cfg: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        cfg = cfg[key]
    return cfg


@pytest.mark.parametrize("overlay", CONFIGS)
def test_every_config_gives_typed_settings(overlay: str) -> None:
    cfg = load_config([REPO / "config" / overlay])
    for path, cls in SECTIONS.items():
        # raises on a key the dataclass lacks or a value its field type cannot take
        cls.from_config(section_of(cfg, path))


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


@pytest.mark.parametrize("path", list(SECTIONS), ids=".".join)
def test_a_wrong_key_is_refused_naming_section_and_key(path: tuple[str, ...]) -> None:
    section = section_of(load_config(), path)
    name = re.escape(".".join(path))
    with pytest.raises(ValueError, match=rf"^{name}: unknown keys \['not_a_key'\]"):
        SECTIONS[path].from_config({**section, "not_a_key": 1})


@pytest.mark.parametrize("overlay", CONFIGS)
def test_typed_sections_keep_the_configs_values(overlay: str) -> None:
    """The typed sections hold the config's values (converted, not changed): what the casts at
    the use sites gave before."""
    cfg = load_config([REPO / "config" / overlay])
    att = AttributionSettings.from_config(cfg["attribution"])
    assert att.seed == cfg["attribution"]["seed"] and isinstance(att.seed, int)
    assert list(att.lambdas) == [float(v) for v in cfg["attribution"]["lambdas"]]
    assert att.draws_per_pass == cfg["attribution"].get("draws_per_pass")
    influence = InfluenceSettings.from_config(cfg["influence"])
    assert list(influence.dampings) == [float(v) for v in cfg["influence"]["dampings"]]
    figures = FiguresSettings.from_config(cfg["figures"])
    assert list(figures.patches) == list(cfg["figures"]["patches"])  # config order
    assert all(len(box) == 4 for box in figures.patches.values())
    cf = CounterfactualSettings.from_config(cfg["counterfactual"])
    assert [(p.target, p.step) for p in cf.pairs] == [
        (p["target"], p["step"]) for p in cfg["counterfactual"]["pairs"]
    ]
    assert LdsSettings.from_config(cfg["lds"]).ci_level == cfg["lds"]["ci_level"]


def test_featurize_jobs_build_attribution_settings_from_the_features_keys() -> None:
    """The featurize rules pass only the keys the features depend on (rules/functions/trak.smk
    FEATURIZE_KEYS): no projector, output_functions or lambdas."""
    section = load_config()["attribution"]
    dropped = ("projector", "output_functions", "lambdas", "compare_projectors")
    partial = AttributionSettings.from_config(
        {k: v for k, v in section.items() if k not in dropped}
    )
    assert partial.projector is None and partial.lambdas == ()
    assert partial.proj_dim == section["proj_dim"]


def test_a_wrong_key_in_a_counterfactual_pair_names_the_pair() -> None:
    section = load_config()["counterfactual"]
    pairs = [{"target": 0, "step": None, "stpe": 5}]
    with pytest.raises(ValueError, match=r"^counterfactual\.pairs\[0\]: unknown keys \['stpe'\]"):
        CounterfactualSettings.from_config({**section, "pairs": pairs})
    one = CounterfactualSettings.from_config({**section, "pairs": [{"target": 1, "step": 2}]})
    assert one.pairs == (CounterfactualPair(1, 2),)
