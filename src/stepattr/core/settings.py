"""Typed settings: a config section becomes a frozen dataclass once, where a job starts.

Below the job boundary code reads fields (``settings.lr``), never a mapping, and casts
nothing: the section's values are converted here, by the field types, and a key the dataclass
does not know is refused (config/schema.yaml already refuses it in a run; this catches a
caller that builds a section by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def _optional(cast: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else cast(value)


# field annotation (as written, under `from __future__ import annotations`) -> conversion
CASTS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "int | None": _optional(int),
    "float | None": _optional(float),
    "str | None": _optional(str),
    "tuple[int, ...]": lambda values: tuple(int(v) for v in values),
    "tuple[str, ...]": lambda values: tuple(str(v) for v in values),
    "tuple[float, ...]": lambda values: tuple(float(v) for v in values),
    "tuple[str, ...] | None": _optional(lambda values: tuple(str(v) for v in values)),
}


def settings_from(cls: type[T], section: Mapping[str, Any], name: str) -> T:
    """``cls`` (a frozen dataclass) from config section ``name``: values converted by field
    type (other annotations pass as they are), defaults where a key is absent."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; expected some of {sorted(known)}")
    typed = {}
    for key, value in section.items():
        cast = CASTS.get(str(known[key].type))
        typed[key] = cast(value) if cast is not None else value
    return cls(**typed)
