"""The workflow's closed lists, and the names built from them: methods, baselines, removal
rules, model ids, dataset sources, score files.

One torch-free module that ``rules/*.smk`` and the package both import (every SLURM job loads
the workflow, where importing torch would cost seconds). A new baseline, removal rule or
dataset source is added here first; the stage module that computes it and its test follow.
A method is its output function's name (``trak`` for the loss, journey-TRAK; ``dtrak`` for the
squared norm, D-TRAK), plus a suffix for projector variants that change the features themselves
(``trak_factored``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# the latent model families (config `family`, besides the pixel DDPMs): text-to-image latent
# diffusion trained here, and LoRA fine-tunes of a pretrained Stable Diffusion pipeline; they
# share every stage from latents to figures
LATENT_FAMILIES = ("text_to_image", "stable_diffusion")

# dataset.source values (rules/datasets.smk, stepattr.datasets.prepare; config/schema.yaml's
# enum must list the same); memory (MB) and wall time (minutes) of prepare_data per source:
# CIFAR-10 holds the tarball's 60,000 images twice while it parses them; mnist5k is 5,000
# digits. `classes`: whether its images have class labels that a classifier can detect (COCO's
# captioned images are one class, so feature transitions by class have nothing to detect)
DATASET_SOURCES = {
    "mnist5k": {"mem_mb": 2000, "runtime": 10, "classes": True},
    "cifar10": {"mem_mb": 4000, "runtime": 60, "classes": True},
    "image_folder": {"mem_mb": 8000, "runtime": 60, "classes": True},
    "coco": {"mem_mb": 16000, "runtime": 240, "classes": False},
}

# TRAK methods: method name -> output function (stepattr.core.output_functions)
METHOD_OUTPUT_FUNCTIONS = {"trak": "loss", "dtrak": "square_norm"}
PROJECTOR_SUFFIXES = {"factored": "_factored"}

# influence methods (stepattr.influence): variant -> its curvature approximation; a method is
# the variant plus the output function's suffix (ekfac: loss on both sides; ekfac_sqnorm:
# D-TRAK's squared norm on both sides, as dtrak)
INFLUENCE_VARIANTS = {"ekfac": "EK-FAC", "kfac": "K-FAC"}
INFLUENCE_OUTPUT_SUFFIXES = {"loss": "", "square_norm": "_sqnorm"}

# baselines of every LDS table (stepattr.lds.baselines); graddot reuses the loss features
BASELINES = ("random", "pixel", "embedding", "graddot")

# counterfactual removal rules (stepattr.counterfactual.removal)
REMOVAL_RULES = ("trak", "random", "pixel")
REMOVED_MODEL = re.compile(r"removed_(" + "|".join(REMOVAL_RULES) + r")_p(\d+)_f(\d+)")
REMOVED_MODEL_PATTERN = r"removed_(?:" + "|".join(REMOVAL_RULES) + r")_p\d+_f\d+"
REFERENCE_MODEL = "removed_none"

# model ids, which name the folders under {outdir}/models/
MODEL_ID_PATTERN = rf"full_\d+|subset_\d+_s\d+|{REMOVED_MODEL_PATTERN}|{REFERENCE_MODEL}"

# the files of a method's scores: (name, extension), in the order of every score directory
SCORE_PARTS = (("scores", "npy"), ("index", "csv"), ("meta", "json"))
SCORE_FILES = tuple(f"{name}.{ext}" for name, ext in SCORE_PARTS)


def full_model_id(i: int) -> str:
    """``full_{i}``: a model of the TRAK ensemble, trained on all training data."""
    return f"full_{int(i)}"


def subset_model_id(row: int, seed_index: int) -> str:
    """``subset_{row}_s{seed}``: an LDS model trained on row ``row`` of the subset masks."""
    return f"subset_{int(row)}_s{int(seed_index)}"


def removed_model_id(rule: str, pair: int, fraction_index: int) -> str:
    """``removed_{rule}_p{pair}_f{fraction index}``: the model retrained without a removal."""
    if rule not in REMOVAL_RULES:
        raise ValueError(f"unknown removal rule {rule!r}; expected one of {REMOVAL_RULES}")
    return f"removed_{rule}_p{int(pair)}_f{int(fraction_index)}"


def parse_removed_model_id(model_id: str) -> tuple[str, int, int]:
    """``(rule, pair, fraction index)`` of a removed model's id."""
    match = REMOVED_MODEL.fullmatch(model_id)
    if not match:
        raise ValueError(f"{model_id!r} is not a removed-model id (removed_<rule>_p<i>_f<j>)")
    return match.group(1), int(match.group(2)), int(match.group(3))


def method_name(output_function: str, projector: str) -> str:
    """``(loss, auto) -> trak``; ``(square_norm, factored) -> dtrak_factored``."""
    base = {fn: name for name, fn in METHOD_OUTPUT_FUNCTIONS.items()}.get(output_function)
    if base is None:
        raise ValueError(f"no attribution method for output function {output_function!r}")
    return base + PROJECTOR_SUFFIXES.get(projector, "")


def parse_method(method: str, default_projector: str) -> tuple[str, str]:
    """Method name -> ``(output_function, projector)``; unsuffixed: the config's projector."""
    for projector, suffix in PROJECTOR_SUFFIXES.items():
        if method.endswith(suffix):
            base = method[: -len(suffix)]
            if base in METHOD_OUTPUT_FUNCTIONS:
                return METHOD_OUTPUT_FUNCTIONS[base], projector
    if method in METHOD_OUTPUT_FUNCTIONS:
        return METHOD_OUTPUT_FUNCTIONS[method], default_projector
    raise ValueError(f"unknown attribution method {method!r}")


def attribution_projectors(attribution: Mapping[str, Any]) -> list[str]:
    """``attribution.projector`` (the main one), then ``attribution.compare_projectors``."""
    return [attribution["projector"], *attribution.get("compare_projectors", [])]


def unsuffixed_projector(attribution: Mapping[str, Any]) -> str:
    """The projector an unsuffixed method name (``trak``) stands for in this config."""
    plain = [p for p in attribution_projectors(attribution) if p not in PROJECTOR_SUFFIXES]
    return plain[0] if plain else attribution["projector"]


def attribution_methods(attribution: Mapping[str, Any]) -> list[str]:
    """The methods a config's ``attribution`` section asks for: one per output function and
    projector (main projector first), e.g. ``trak, dtrak, trak_factored, dtrak_factored``.

    Raises if two projectors would give the same method names (e.g. ``auto`` beside
    ``rademacher``: both are unsuffixed), so their features cannot be told apart.
    """
    projectors = attribution_projectors(attribution)
    names = {}
    for projector in projectors:
        name = method_name("loss", projector)
        if name in names:
            raise ValueError(
                f"attribution.projector and attribution.compare_projectors {projectors}: "
                f"{names[name]!r} and {projector!r} both give method {name!r}; compare a dense "
                "projector only with a suffixed one (factored)"
            )
        names[name] = projector
    return [
        method_name(fn, projector)
        for projector in projectors
        for fn in attribution["output_functions"]
    ]


def influence_method_name(variant: str, output_function: str) -> str:
    """``(ekfac, loss) -> ekfac``; ``(kfac, square_norm) -> kfac_sqnorm``."""
    if variant not in INFLUENCE_VARIANTS:
        raise ValueError(f"unknown influence variant {variant!r}; expected one of "
                         f"{list(INFLUENCE_VARIANTS)}")  # fmt: skip
    if output_function not in INFLUENCE_OUTPUT_SUFFIXES:
        raise ValueError(f"no influence method for output function {output_function!r}")
    return variant + INFLUENCE_OUTPUT_SUFFIXES[output_function]


def parse_influence_method(method: str) -> tuple[str, str]:
    """Influence method name -> ``(variant, output_function)``."""
    for variant in INFLUENCE_VARIANTS:
        for output_function, suffix in INFLUENCE_OUTPUT_SUFFIXES.items():
            if method == variant + suffix:
                return variant, output_function
    raise ValueError(f"unknown influence method {method!r}")


def influence_methods(cfg: Mapping[str, Any]) -> list[str]:
    """The influence methods a config asks for: ``influence.methods`` x
    ``influence.output_functions`` (null: ``attribution.output_functions``); none where
    ``influence.methods`` is empty."""
    influence = cfg.get("influence", {})
    functions = influence.get("output_functions") or cfg["attribution"]["output_functions"]
    return [
        influence_method_name(variant, fn)
        for fn in functions
        for variant in influence.get("methods", [])
    ]
