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

from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import yaml


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
    if cfg.get("family", "pixel") != "text_to_image":
        return size
    levels = len(ae["block_out_channels"])
    if size % 2 ** (levels - 1):
        raise ConfigError(
            f"dataset.image_size = {size} cannot be downsampled {levels - 1} times by the "
            f"autoencoder (autoencoder.block_out_channels has {levels} levels)"
        )
    return size // 2 ** (levels - 1)
