"""Ids of the counterfactual models, which name their output paths.

Kept apart from :mod:`stepattr.counterfactual` (torch, detectors) because the workflow builds
and parses these ids while it loads, in every SLURM job too, where importing torch would cost
seconds per job.
"""

from __future__ import annotations

import re

REMOVAL_RULES = ("trak", "random", "pixel")
REMOVED_MODEL = re.compile(r"removed_(trak|random|pixel)_p(\d+)_f(\d+)")


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
