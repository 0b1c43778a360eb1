"""Config files: the default plus overlays, and typed ``--config`` overrides.

``config/config.yaml`` is the embedded default; every other config (``ci.yaml``, ``cifar2.yaml``,
``cifar10.yaml``, a user's) is an overlay holding only the keys it changes. Snakemake merges
``--configfile`` overlays into the default key by key (nested sections too, lists whole);
:func:`load_config` does the same for the tools and tests that read configs outside Snakemake.

Typed overrides: ``--config 'train={steps: 5}'`` trains 5 steps.
Snakemake parses a top-level ``--config key=value`` into a number or a string, but the values
inside a nested one (``train={steps: 5}``) stay strings, which the schema then refuses
(``'5' is not of type 'integer'``). :func:`apply_typed_overrides` reads each such string as
YAML where the schema gives the key a non-string type, so ``5`` becomes an integer while a
wrong value (``steps: many``) stays a string and the schema still stops naming the key.
Torch-free: every job's Snakemake process runs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from stepattr.workflow.names import LATENT_FAMILIES


def _types(spec: Mapping[str, Any]) -> set[str]:
    kind = spec.get("type", [])
    types = {kind} if isinstance(kind, str) else set(kind)
    for option in spec.get("anyOf", []) + spec.get("oneOf", []):
        types |= _types(option)
    if "enum" in spec:
        types |= {type(v).__name__ for v in spec["enum"]}
    return types


def typed_value(value: Any, spec: Mapping[str, Any]) -> Any:
    """``value`` read as YAML where it is a string and ``spec`` does not allow strings."""
    if not isinstance(value, str) or not spec or {"string", "str"} & _types(spec):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def apply_typed_overrides(
    config: MutableMapping[str, Any],
    overrides: Mapping[str, Any],
    schema: Mapping[str, Any],
) -> None:
    """Give the nested ``--config`` values in ``config`` the types ``schema`` declares.

    ``overrides`` is what was given on the command line (Snakemake has already merged it
    into ``config``); only the keys it names are touched.
    """
    props = schema.get("properties", {})
    for key, value in overrides.items():
        if key not in config:
            continue
        spec = props.get(key, {})
        if isinstance(value, Mapping) and isinstance(config[key], MutableMapping):
            apply_typed_overrides(config[key], value, spec)
        else:
            config[key] = typed_value(config[key], spec)


def load_schema(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` applied key by key: sections merge, every other value
    (lists included) is replaced, as Snakemake merges ``--configfile`` into ``configfile:``."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    overlays: Sequence[str | Path] = (), default: str | Path = DEFAULT_CONFIG
) -> dict[str, Any]:
    """The config a run with ``--configfile <overlays...>`` sees: the default, then each overlay."""
    cfg = yaml.safe_load(Path(default).read_text())
    for path in overlays:
        cfg = merge(cfg, yaml.safe_load(Path(path).read_text()) or {})
    return cfg


class ConfigError(ValueError):
    """A configuration value the workflow cannot run with."""


def model_side(cfg: Mapping[str, Any]) -> int:
    """Side of what the UNet sees: the image, or for the text-to-image family its latent,
    image_size / 2^(levels - 1) of autoencoder.block_out_channels (for a pretrained
    autoencoder the config's layout stands in for the loaded one's: config/coco.yaml)."""
    size = int(cfg["dataset"]["image_size"])
    ae = cfg.get("autoencoder") or {}
    if cfg.get("family", "pixel") not in LATENT_FAMILIES:
        return size
    levels = len(ae["block_out_channels"])
    if size % 2 ** (levels - 1):
        raise ConfigError(
            f"dataset.image_size = {size} cannot be downsampled {levels - 1} times by the "
            f"autoencoder (autoencoder.block_out_channels has {levels} levels)"
        )
    return size // 2 ** (levels - 1)


# --------------------------------------------------------------- the Stable Diffusion family

#: the folders a StableDiffusionPipeline folder must hold for this workflow
PIPELINE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: the keys a stable_diffusion config takes from its pipeline (they must be left at default)
PIPELINE_OWNED = (("autoencoder", "pretrained"), ("text_encoder", "pretrained"))


def cached_folder(path: str, key: str) -> Path:
    """Config value ``key`` = ``path`` as a local folder: the folder itself, or the snapshot of
    a hub id already in the local Hugging Face cache (nothing is downloaded)."""
    folder = Path(path)
    if not folder.is_dir() and path.count("/") == 1 and not path.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(path, local_files_only=True))
        except Exception as err:  # not cached (or no huggingface_hub): say how to get it
            raise ConfigError(
                f"{key} = {path!r} is neither a folder nor a hub id in the local cache "
                f"(download it first: huggingface-cli download {path} --local-dir <folder>, "
                f"then set {key} to <folder>) ({type(err).__name__})"
            ) from err
    return folder


def pipeline_folder(path: str) -> Path:
    """``pipeline.path`` as a local folder (:func:`cached_folder`). A missing folder or part
    is named."""
    folder = cached_folder(path, "pipeline.path")
    if not folder.is_dir():
        raise ConfigError(
            f"pipeline.path = {path!r}: no such folder (config/digits_sd.yaml's pipeline is "
            "built by: snakemake results/digits_t2i/pipeline/model_index.json --cores all "
            "--configfile config/digits_t2i.yaml)"
        )
    missing = [part for part in PIPELINE_PARTS if not (folder / part).is_dir()]
    if missing or not (folder / "model_index.json").is_file():
        what = f"{missing[0]}/" if missing else "model_index.json"
        raise ConfigError(
            f"pipeline.path = {path!r}: not a StableDiffusionPipeline folder (no {what})"
        )
    return folder


def _part_config(folder: Path, part: str, name: str = "config.json") -> dict[str, Any]:
    file = folder / part / name
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"pipeline.path: cannot read {file} ({err})") from err


def resolve_pipeline(cfg: MutableMapping[str, Any]) -> None:
    """Fill in place what a ``stable_diffusion`` config takes from its pipeline folder.

    The autoencoder and text encoder are the pipeline's (``autoencoder.pretrained``,
    ``text_encoder.pretrained``); the latent layout, the text width and the noise schedule
    are read from its configs, so every check, cost and memory estimate sees the real
    sizes. A pipeline whose scheduler predicts anything but epsilon is refused by name.
    Other families are left alone.
    """
    if cfg.get("family", "pixel") != "stable_diffusion":
        return
    path = (cfg.get("pipeline") or {}).get("path")
    if not path:
        raise ConfigError("family = stable_diffusion needs pipeline.path (a pipeline folder)")
    for section, key in PIPELINE_OWNED:
        value = cfg[section].get(key)
        if value is not None and not str(value).startswith(str(path)):
            raise ConfigError(
                f"{section}.{key} = {value!r}: family stable_diffusion takes it from "
                "pipeline.path; leave it null"
            )
    folder = pipeline_folder(str(path))
    vae, text = _part_config(folder, "vae"), _part_config(folder, "text_encoder")
    scheduler = _part_config(folder, "scheduler", "scheduler_config.json")
    prediction = scheduler.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise ConfigError(
            f"pipeline.path = {path!r}: its scheduler predicts {prediction!r}; the output "
            "functions here are written for epsilon prediction (e.g. SD 1.5, SD 2.1-base)"
        )
    cfg["pipeline"]["path"] = str(folder)
    resolve_transitions_clip(cfg["pipeline"]["transitions"])
    cfg["autoencoder"] |= {
        "pretrained": str(folder / "vae"),
        "block_out_channels": list(vae["block_out_channels"]),
        "latent_channels": int(vae["latent_channels"]),
    }
    cfg["text_encoder"] |= {
        "pretrained": str(folder),
        "width": int(text["hidden_size"]),
        "context": int(text["max_position_embeddings"]),
    }
    cfg["diffusion"] |= {
        "num_train_timesteps": int(scheduler["num_train_timesteps"]),
        "beta_start": float(scheduler["beta_start"]),
        "beta_end": float(scheduler["beta_end"]),
        "beta_schedule": str(scheduler.get("beta_schedule", "linear")),
    }


def resolve_transitions_clip(transitions: MutableMapping[str, Any]) -> None:
    """``pipeline.transitions``: the detector folder resolved in place; features without a
    detector (or a detector without features) is an error naming the key that is missing."""
    clip, features = transitions.get("clip"), transitions.get("features") or []
    if bool(clip) != bool(features):
        missing = "pipeline.transitions.features" if clip else "pipeline.transitions.clip"
        raise ConfigError(
            f"{missing} is empty: the pipeline's transitions need a CLIP detector and the "
            "features it reads (set both, or neither)"
        )
    if not clip:
        return
    folder = cached_folder(str(clip), "pipeline.transitions.clip")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"pipeline.transitions.clip = {clip!r}: no such CLIPModel folder (config.json); "
            "config/digits_sd.yaml's is the text-to-image run's text_encoder/clip"
        )
    transitions["clip"] = str(folder)


def pipeline_transitions_enabled(cfg: Mapping[str, Any]) -> bool:
    """Whether the DAG measures the pretrained pipeline's transitions (stable_diffusion with a
    detector and features)."""
    return cfg.get("family") == "stable_diffusion" and bool(
        cfg["pipeline"]["transitions"].get("clip")
    )


def model_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the train rules build: the ``model`` section, or for ``stable_diffusion`` (after
    :func:`resolve_pipeline`) a LoRA spec on the pipeline's UNet (stepattr.core.lora)."""
    if cfg.get("family", "pixel") != "stable_diffusion":
        return dict(cfg["model"])
    base = str(Path(cfg["pipeline"]["path"]) / "unet")
    return {"base": base, "lora": dict(cfg["pipeline"]["lora"])}
