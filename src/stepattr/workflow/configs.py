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

import copy
import json
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from stepattr.core.names import LATENT_FAMILIES


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


def check_stacking(configfiles: Sequence[str | Path]) -> None:
    """A partial overlay (one with ``stack_on``: config/ci_t2i.yaml, config/ci_sd.yaml) runs
    only on top of the files it names, given before it in ``configfiles`` (``--configfile``'s
    values, in order); alone it would silently run another family's DAG. The last given file
    with a ``stack_on`` names the whole stack (ci_sd.yaml's includes ci_t2i.yaml, whose own
    stack it replaces), as it is the ``stack_on`` of the merged config."""
    import os

    given = [Path(f).resolve() for f in configfiles]
    for i in reversed(range(len(given))):
        try:
            needs = (yaml.safe_load(given[i].read_text()) or {}).get("stack_on")
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # Snakemake itself reports an unreadable config file
        if not needs:
            continue
        required = [(given[i].parent / name).resolve() for name in needs]
        if all(r in given[:i] for r in required):
            return
        names = [os.path.relpath(r) for r in required]
        raise ConfigError(
            f"{os.path.relpath(given[i])} is a partial overlay (its stack_on): it runs only on "
            f"top of {', '.join(names)}; give them before it, in that order: snakemake "
            f"--configfile {' '.join([*names, os.path.relpath(given[i])])} ..."
        )


# ---------------------------------------------------------------- schema validation, briefly


def _resolve(spec: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with a local ``$ref`` (``#/$defs/name``) replaced by its target; the referring
    node's own keys (its description, default) win."""
    spec = dict(spec)
    ref = spec.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        spec = {**_resolve(target, root), **spec}
    return spec


def spec_at(root: Mapping[str, Any], path: Sequence[str | int]) -> dict[str, Any]:
    """The schema of the value at ``path`` (keys and list indices), ``{}`` where none is."""
    spec = _resolve(root, root)
    for part in path:
        if isinstance(part, int):
            spec = _resolve(spec.get("items", {}), root)
        elif part in spec.get("properties", {}):
            spec = _resolve(spec["properties"][part], root)
        elif isinstance(spec.get("additionalProperties"), Mapping):
            spec = _resolve(spec["additionalProperties"], root)
        else:
            return {}
    return spec


def key_name(path: Sequence[str | int]) -> str:
    """``("counterfactual", "pairs", 0, "step") -> "counterfactual.pairs[0].step"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string",
               "boolean": "true or false", "array": "a list", "object": "a mapping",
               "null": "null"}  # fmt: skip


def _bounds(spec: Mapping[str, Any]) -> str:
    """`` in [0, 1)``, `` >= 1``, `` < 1`` or nothing, from a number's schema."""
    low = ("[", spec["minimum"]) if "minimum" in spec else ("(", spec.get("exclusiveMinimum"))
    high = ("]", spec["maximum"]) if "maximum" in spec else (")", spec.get("exclusiveMaximum"))
    if low[1] is not None and high[1] is not None:
        return f" in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low[1] is not None:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high[1] is not None:
        return f" {'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


def allowed_values(spec: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """What the schema ``spec`` accepts, in words: ``one of: auto, cpu, cuda``,
    ``an integer >= 1``, ``a number in (0, 1)``, ``a list of strings (at least 1)``, ..."""
    spec = _resolve(spec, root)
    if "enum" in spec:
        return "one of: " + ", ".join(_shown(v) for v in spec["enum"])
    options = spec.get("anyOf") or spec.get("oneOf")
    if options:
        return " or ".join(allowed_values(option, root) for option in options)
    kinds = spec.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = []
    for kind in kinds:
        text = _TYPE_NAMES.get(kind, kind)
        if kind in ("integer", "number"):
            text += _bounds(spec)
        elif kind == "array":
            items = _resolve(spec.get("items", {}), root)
            if items:
                text += f" of ({allowed_values(items, root)})"
            if "minItems" in spec:
                text += f", at least {spec['minItems']} long"
            if "maxItems" in spec:
                text += f", at most {spec['maxItems']} long"
            if spec.get("uniqueItems"):
                text += ", no repeats"
        elif kind == "string":
            if "pattern" in spec:
                text += f" matching {spec['pattern']}"
            elif spec.get("minLength"):
                text = "a non-empty string"
        elif kind == "object" and spec.get("properties"):
            text += " with keys " + ", ".join(spec["properties"])
        words.append(text)
    return " or ".join(words) or "see config/schema.yaml"


def _shown(value: Any, limit: int = 70) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown_description(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "... (config/README.md)"


def describe_schema_error(err: Any, root: Mapping[str, Any]) -> str:
    """A few lines for a jsonschema ``ValidationError``: the key, its value, what is allowed
    (and the key's description); never the whole schema or config."""
    import difflib

    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        known = list(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in known]
        where = f"in {key_name(path)}" if path else "at the top level"
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {key_name([*path, close[0]])}?" if close else ""
            lines.append(f"unknown config key {key_name([*path, key])} ({where}){hint}")
        if known:
            lines.append(f"  allowed keys {where}: {', '.join(known)}")
        else:
            lines.append(f"  allowed: {allowed_values(err.schema['additionalProperties'], root)}")
        return "\n".join(lines)
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        key = key_name([*path, missing[0]]) if missing else key_name(path)
        spec = spec_at(root, [*path, *missing[:1]])
        lines = [f"missing config key {key} (required)"]
        lines.append(f"  allowed: {allowed_values(spec, root)}")
        if spec.get("description"):
            lines.append(f"  {key}: {_shown_description(spec['description'])}")
        return "\n".join(lines)
    spec = spec_at(root, path)
    key = key_name(path) or "(the config)"
    plain = err.validator in ("enum", "type", "anyOf", "oneOf")  # "allowed:" says the rest
    problem = "not allowed" if plain else err.message.removeprefix(f"{err.instance!r} ")
    if len(problem) > 100:
        problem = f"fails the schema's {err.validator!r} check"
    lines = [f"config key {key} = {_shown(err.instance)}: {problem}"]
    lines.append(f"  allowed: {allowed_values(spec or err.schema, root)}")
    if spec.get("description"):
        lines.append(f"  {key}: {_shown_description(spec['description'])}")
    return "\n".join(lines)


def _defaulting_validator(schema: Mapping[str, Any]) -> Any:
    """A draft 2020-12 validator that fills the schema's defaults in place, as Snakemake's
    ``validate()`` does (https://python-jsonschema.readthedocs.io/en/latest/faq/)."""
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, subschema):
        if isinstance(instance, MutableMapping):
            for name, prop in props.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from properties(validator, props, instance, subschema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})(schema)


def validate_config(cfg: MutableMapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check ``cfg`` against the schema, filling its defaults in place. The first error is a
    :class:`ConfigError` of a few lines (:func:`describe_schema_error`)."""
    from jsonschema.exceptions import best_match

    err = best_match(_defaulting_validator(schema).iter_errors(cfg))
    if err is not None:
        raise ConfigError(describe_schema_error(err, schema))


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


#: hub ids of the pretrained snapshots the shipped configs read from local folders
#: (``pretrained/<folder name>``), for the message that says how to fetch a missing one
HUB_SNAPSHOTS = {
    "stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "stable-diffusion-2": "stabilityai/stable-diffusion-2",
    "clip-vit-large-patch14": "openai/clip-vit-large-patch14",
}


def fetch_hint(path: str, key: str) -> str:
    """How to get the folder ``key`` = ``path`` names: the ``huggingface-cli download`` of its
    hub id into that folder (a known snapshot's real hub id; else ``path`` read as a hub id)."""
    name = Path(path).name
    hub_id = HUB_SNAPSHOTS.get(name)
    if hub_id is not None and hub_id != path:  # a local folder of a known snapshot
        return (
            f"fetch it into that folder: huggingface-cli download {hub_id} --local-dir {path} "
            "(the config's header lists the files to --include)"
        )
    return (
        f"fetch it: huggingface-cli download {path} --local-dir pretrained/{name}, then set "
        f"{key}: pretrained/{name}"
    )


def cached_folder(path: str, key: str) -> Path:
    """Config value ``key`` = ``path`` as a local folder: the folder itself, or the snapshot of
    a hub id already in the local Hugging Face cache (nothing is downloaded)."""
    folder = Path(path)
    if not folder.is_dir() and path.count("/") == 1 and not path.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(path, local_files_only=True))
        except Exception as err:  # not cached (or no huggingface_hub): say how to get it
            why = "" if "NotFound" in type(err).__name__ else f" ({type(err).__name__}: {err})"
            raise ConfigError(
                f"{key} = {path!r}: no such folder, and no hub id {path!r} in the local Hugging "
                f"Face cache (a run downloads nothing){why}; {fetch_hint(path, key)}"
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
