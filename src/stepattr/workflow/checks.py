"""Configuration checks that a JSON schema cannot express.

The schema (config/schema.yaml, applied by Snakemake's ``validate()``) catches unknown keys and
wrong types. :func:`check_config` then checks the relations between keys, so that a config
that would fail hours into a run fails before any job starts, naming the key at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from stepattr.core.diffusion import Schedule, build_unet, check_model_config
from stepattr.core.lora import check_lora
from stepattr.core.names import LATENT_FAMILIES, attribution_methods, attribution_projectors
from stepattr.datasets.image_folder import EXTENSIONS as IMAGE_EXTENSIONS
from stepattr.figures.patches import check_figures_config
from stepattr.trak.factored import plan_factors
from stepattr.workflow.configs import (
    ConfigError,
    load_config,
    model_side,
    resolve_pipeline,
    validate_config,
)


def check_config(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot work."""
    family = cfg.get("family", "pixel")
    try:
        if family == "stable_diffusion":  # the UNet is the pipeline's: its LoRA is configured
            check_lora(cfg["pipeline"]["lora"])
        else:
            check_model_config(cfg["model"], model_side(cfg))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if family in LATENT_FAMILIES:
        check_text_to_image(cfg)
    diff = cfg["diffusion"]
    if diff["beta_start"] >= diff["beta_end"]:
        raise ConfigError(
            f"diffusion.beta_start = {diff['beta_start']} must be below "
            f"diffusion.beta_end = {diff['beta_end']}"
        )
    steps = int(diff["num_train_timesteps"])
    for i, t in enumerate(cfg["sampling"]["grid"]):
        if not 0 <= t < steps:
            raise ConfigError(
                f"sampling.grid[{i}] = {t} is outside [0, {steps}) (diffusion.num_train_timesteps)"
            )
    n_inf = int(cfg["sampling"].get("inference_steps", steps))
    if not 1 <= n_inf <= steps:
        raise ConfigError(f"sampling.inference_steps = {n_inf} must lie in [1, {steps}]")
    on_schedule = set(Schedule.from_config(diff).inference_timesteps(n_inf))
    off = [t for t in cfg["sampling"]["grid"] if t not in on_schedule]
    if off:
        raise ConfigError(
            f"sampling.grid steps {off} are not on the {n_inf}-step sampler's schedule "
            f"(multiples of {steps // n_inf} up to {max(on_schedule)})"
        )
    alpha = cfg["subsets"]["alpha"]
    if not 0 < alpha < 1:
        raise ConfigError(f"subsets.alpha = {alpha} must lie in (0, 1)")
    dataset = cfg["dataset"]
    needs = {
        "cifar10": ("url", "md5"),
        "image_folder": ("path",),
        "coco": ("images_url", "images_md5", "annotations_url", "annotations_md5"),
    }
    for key in needs.get(dataset["source"], ()):
        if key not in dataset:
            raise ConfigError(
                f"dataset.{key} is required when dataset.source = {dataset['source']}"
            )
    if dataset["source"] == "image_folder":
        check_image_folder(dataset["path"])
    check_attribution(cfg)
    try:
        check_figures_config(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    for i, pair in enumerate(cfg.get("counterfactual", {}).get("pairs", [])):
        if pair["target"] >= cfg["sampling"]["num_targets"]:
            raise ConfigError(
                f"counterfactual.pairs[{i}].target = {pair['target']} must be below "
                f"sampling.num_targets = {cfg['sampling']['num_targets']}"
            )
        if pair["step"] is not None and pair["step"] not in cfg["sampling"]["grid"]:
            raise ConfigError(
                f"counterfactual.pairs[{i}].step = {pair['step']} is not in sampling.grid"
            )


def check_image_folder(path: str) -> None:
    """``dataset.path`` is a folder holding at least one PNG or JPEG (searched recursively, as
    prepare_data reads it), so a wrong or empty folder stops the run before the DAG is built."""
    folder = Path(path)
    where = "" if folder.is_absolute() else f" (relative to the working directory {Path.cwd()})"
    if not folder.is_dir():
        raise ConfigError(
            f"dataset.path = {path!r}: no such folder{where}; set dataset.path to the folder "
            "of your PNG/JPEG images"
        )
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.rglob("*")):
        raise ConfigError(
            f"dataset.path = {path!r}: no PNG or JPEG images ({', '.join(IMAGE_EXTENSIONS)}) "
            f"in the folder or below it{where}"
        )


def unet_inputs(cfg: Mapping[str, Any]) -> tuple[int, int | None]:
    """Input channels and cross-attention width of the configured UNet (a pretrained
    autoencoder's or text encoder's own sizes are known only once loaded: the config's
    stand in for the layout check)."""
    if cfg.get("family", "pixel") not in LATENT_FAMILIES:
        return 1, None
    return int(cfg["autoencoder"]["latent_channels"]), int(cfg["text_encoder"]["width"])


def check_text_to_image(cfg: Mapping[str, Any]) -> None:
    """The family needs captions, a text encoder whose context holds the prompts (checked when
    they are tokenized) and shared batches for its subset models."""
    ds = cfg["dataset"]
    if (
        ds.get("caption_templates") is None
        and ds.get("captions_csv") is None
        and (ds["source"] != "coco")
    ):
        raise ConfigError(
            f"family = {cfg['family']} needs captions: set dataset.caption_templates, "
            "dataset.captions_csv (image_folder) or dataset.source: coco"
        )
    if not cfg["subsets"].get("shared_batches", True):
        raise ConfigError(f"family = {cfg['family']} needs subsets.shared_batches: true")
    if cfg["subsets"].get("group_size", 1) > 1:
        raise ConfigError(
            f"family = {cfg['family']} trains one subset model per job: set "
            "subsets.group_size: 1 (the batched trainer does not take text-conditioned or "
            "LoRA models; one such model per job already fills a GPU)"
        )
    if not cfg["sampling"].get("prompts"):
        raise ConfigError(
            f"family = {cfg['family']} needs sampling.prompts: its targets are sampled from them"
        )
    # parts of the text-to-image family still to come: refused by name rather than run half-way
    if cfg["sampling"].get("num_validation", 0):
        raise ConfigError(
            f"family = {cfg['family']} has no validation targets yet: "
            "set sampling.num_validation: 0"
        )
    if (cfg.get("influence") or {}).get("methods"):
        raise ConfigError(
            f"family = {cfg['family']} has no K-FAC influence yet: set influence.methods: []"
        )
    if (cfg.get("figures") or {}).get("patch_targets"):
        raise ConfigError(
            f"family = {cfg['family']} has no patch attribution yet (patches would be in latent "
            "coordinates): set figures.patch_targets: []"
        )


def check_attribution(cfg: Mapping[str, Any]) -> None:
    """Projectors: distinct method names, and a proj_dim the factored layout can split.

    The factored plan is made on a meta-device UNet of the config (no memory, no weights), so
    a model it cannot cover or a too small ``attribution.proj_dim`` fails here, not in a job.
    """
    att = cfg["attribution"]
    try:
        attribution_methods(att)
        if "factored" in attribution_projectors(att):
            if cfg.get("family", "pixel") == "stable_diffusion":
                raise ValueError(
                    "attribution.projectors: the factored projector does not cover LoRA "
                    "adapters yet; use [dense] with family stable_diffusion"
                )
            with torch.device("meta"):
                unet = build_unet(cfg["model"], model_side(cfg), *unet_inputs(cfg))
            plan_factors(unet, int(att["proj_dim"]) * int(att.get("factored_expansion", 1)))
    except ValueError as err:
        raise ConfigError(str(err)) from err


def validate_file(config_path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    """Load a YAML config (an overlay on the config.yaml beside the schema), validate it against
    the schema and :func:`check_config` (for tests)."""
    cfg = load_config([config_path], default=Path(schema_path).parent / "config.yaml")
    schema = yaml.safe_load(Path(schema_path).read_text())
    try:
        validate_config(cfg, schema)  # what the workflow runs: the same few lines
    except ConfigError as err:
        raise ConfigError(f"{config_path}: {err}") from err
    resolve_pipeline(cfg)
    check_config(cfg)
    return cfg
