"""Attribution method names: which output function and projector a method name stands for.

Kept free of torch so the Snakefile can import it cheaply. A method is its output function's
name (``trak`` for the loss, journey-TRAK; ``dtrak`` for the squared norm, D-TRAK), plus a
suffix for projector variants that change the features themselves (``trak_factored``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METHOD_OUTPUT_FUNCTIONS = {"trak": "loss", "dtrak": "square_norm"}
PROJECTOR_SUFFIXES = {"factored": "_factored"}


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
