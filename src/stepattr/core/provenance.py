"""How tables and figures name the config they came from (rules/common.smk: config_provenance)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_config(provenance: Mapping[str, Any]) -> str:
    """``"config/ci.yaml; overrides {'outdir': ...}"``: the config files in load order (later
    override earlier), then any ``--config`` values."""
    files = ", ".join(provenance.get("config_files", [])) or "(no config file)"
    overrides = provenance.get("config_overrides") or {}
    return files + (f"; overrides {dict(overrides)}" if overrides else "")
