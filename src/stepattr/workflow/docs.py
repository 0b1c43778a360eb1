"""Numbers and references in the docs, written by the tools that know them.

Every generated part of a document sits between two marker comments,
``<!-- <name>:start -->`` and ``<!-- <name>:end -->``, and is rewritten whole by
``scripts/docs/regenerate.py``; the text around the markers is written by hand. The parts:

- ``config/README.md``: every config key, from ``config/schema.yaml``'s descriptions and
  ``config/config.yaml``'s values (:func:`config_readme`);
- ``docs/cluster.md``: the cost table of each paper-scale overlay, as
  ``python -m stepattr.workflow.cost`` prints it (:data:`COST_TABLES`);
- ``docs/rulegraph.dot`` / ``.png``: ``snakemake --rulegraph`` (:func:`canonical_rulegraph`);
- ``README.md``: the results summary of a run's LDS tables (:func:`results_summary`).

``tests/test_docs.py`` regenerates them and fails where a checked-in copy differs. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from stepattr.workflow.configs import _resolve, allowed_values

# ---------------------------------------------------------------- marked blocks


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_block(text: str, name: str) -> str:
    """The text between ``name``'s markers (without them); ValueError where they are missing."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start} ... {end} pair")
    return text[text.index(start) + len(start) : text.index(end)]


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the part between ``name``'s markers replaced by ``body``."""
    start, end = markers(name)
    read_block(text, name)
    head, tail = text[: text.index(start) + len(start)], text[text.index(end) :]
    return f"{head}\n{body.strip()}\n{tail}"


# ---------------------------------------------------------------- config/README.md


def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


_UNSET = object()


def _value(value: Any, limit: int = 48) -> str:
    if value is _UNSET:
        return "—"
    if value is None:
        return "`null`"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("...").strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"`{_cell(text)}`"


def _rows(spec: Mapping[str, Any], root: Mapping[str, Any], prefix: str, default: Any) -> list:
    """(key, allowed, default, description) of every leaf under ``spec``; an array of
    mappings lists its items' keys as ``key[].name``."""
    rows = []
    for name, sub in spec.get("properties", {}).items():
        sub = _resolve(sub, root)
        key = f"{prefix}{name}"
        here = (
            default.get(name, sub.get("default", _UNSET))
            if isinstance(default, Mapping)
            else _UNSET
        )
        if "properties" in sub and sub.get("type") == "object":
            if sub.get("description"):
                rows.append((key, "a mapping", "", sub["description"]))
            rows += _rows(sub, root, f"{key}.", here if isinstance(here, Mapping) else {})
            continue
        items = _resolve(sub.get("items", {}), root)
        rows.append((key, allowed_values(sub, root), _value(here), sub.get("description", "")))
        if sub.get("type") == "array" and "properties" in items:
            rows += _rows(items, root, f"{key}[].", {})
    return rows


def config_readme(schema: Mapping[str, Any], default: Mapping[str, Any]) -> str:
    """The reference part of config/README.md: one table per top-level section."""
    out = []
    specs = {k: _resolve(s, schema) for k, s in schema["properties"].items()}
    top = [(k, s) for k, s in specs.items() if "properties" not in s]
    sections = [(k, s) for k, s in specs.items() if "properties" in s]
    header = ["| key | allowed | default | description |", "|---|---|---|---|"]

    def table(rows: list) -> list[str]:
        return header + [
            f"| `{key}` | {_cell(allowed)} | {value} | {_cell(text)} |"
            for key, allowed, value, text in rows
        ]

    out += ["### Top level", ""]
    out += table(
        [
            (k, allowed_values(s, schema), _value(default.get(k, s.get("default", _UNSET))),
             s.get("description", ""))
            for k, s in top
        ]
    )  # fmt: skip
    for name, spec in sections:
        out += ["", f"### `{name}`", ""]
        if spec.get("description"):
            out += [f"{spec['description'][0].upper()}{spec['description'][1:]}.", ""]
        out += table(_rows(spec, schema, f"{name}.", default.get(name) or {}))
    return "\n".join(out) + "\n"


def undescribed_keys(schema: Mapping[str, Any]) -> list[str]:
    """Keys of the schema without a description (every key should say what it does)."""
    missing = []

    def walk(spec: Mapping[str, Any], prefix: str) -> None:
        for name, sub in spec.get("properties", {}).items():
            sub = _resolve(sub, schema)
            if not sub.get("description"):
                missing.append(prefix + name)
            walk(sub, f"{prefix}{name}.")
            items = _resolve(sub.get("items", {}), schema)
            walk(items, f"{prefix}{name}[].")

    walk(schema, "")
    return missing


# ---------------------------------------------------------------- cost tables, rule graph

#: docs/cluster.md's cost tables: marker name -> the overlay priced. config/sd.yaml needs its
#: pipeline folder and images to dry-run: scripts/docs/regenerate.py points them at stand-ins
#: (SD v1.5's configs without weights, one image); the price reads only the config.
COST_TABLES = {
    "cost:cifar2": "config/cifar2.yaml",
    "cost:cifar10": "config/cifar10.yaml",
    "cost:coco": "config/coco.yaml",
    "cost:sd": "config/sd.yaml",
}

_NODE = re.compile(r'^\s*(\d+)\[label = "([^"]+)"(.*)$')
_EDGE = re.compile(r"^\s*(\d+) -> (\d+)\s*$")


def canonical_rulegraph(dot: str) -> str:
    """``snakemake --rulegraph`` output in a fixed order: Snakemake prints the edges in an
    order that changes from run to run, so nodes are kept as printed and edges sorted by
    their rules' names (anything before ``digraph`` is Snakemake's log, dropped)."""
    lines = dot[dot.index("digraph") :].splitlines()
    names = {m[1]: m[2] for line in lines if (m := _NODE.match(line))}
    edges = sorted((m[1], m[2]) for line in lines if (m := _EDGE.match(line)))
    edges.sort(key=lambda e: (names[e[1]], names[e[0]]))
    head = [line for line in lines if not _EDGE.match(line) and line.strip() != "}"]
    return "\n".join(head + [f"\t{a} -> {b}" for a, b in edges] + ["}"]) + "\n"


# ---------------------------------------------------------------- the results summary


def _ci_excludes_zero(part: Any) -> int:
    return int(((part["ci_low"] > 0) | (part["ci_high"] < 0)).sum())


def results_summary(lds: Any, dtrak: Any | None = None, source: str = "") -> str:
    """The README's results table from a run's ``tables/lds.csv`` (and ``lds_dtrak.csv``):
    per method (target set ``all``), the mean LDS over the grid steps, how many steps' CI
    excludes 0 (and on which side), and the D-TRAK protocol's LDS with its CI; methods in
    descending mean LDS, the retraining ceiling (seed agreement, a reference, not a method) last."""
    rows = lds[lds["target_set"] == "all"] if "target_set" in lds else lds
    if dtrak is not None and "target_set" in dtrak:
        dtrak = dtrak[dtrak["target_set"] == "all"]
    steps = rows["step"].nunique()
    summary = []
    for method, part in rows.groupby("method", sort=False):
        above = int((part["ci_low"] > 0).sum())
        below = int((part["ci_high"] < 0).sum())
        label = part["label"].iloc[0] if "label" in part and part["label"].notna().any() else ""
        protocol = ""
        if dtrak is not None:
            match = dtrak[dtrak["method"] == method]
            if len(match):
                r = match.iloc[0]
                protocol = f"{r['lds']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        summary.append((method, label, part["lds"].mean(), above, below, protocol))
    summary.sort(key=lambda r: (r[0] == "ceiling", -r[2]))
    out = [
        "| method | mean LDS over steps | steps whose CI excludes 0 "
        "| D-TRAK protocol LDS [95% CI] |",
        "|---|---:|---:|---:|",
    ]
    for method, label, mean, above, below, protocol in summary:
        name = f"`{method}`" + (f" ({_cell(label)})" if label and label != method else "")
        if method == "ceiling":
            name = "retraining ceiling (seed agreement)"
        sides = f"{above + below} of {steps}"
        if below:
            sides += f" ({above} above, {below} below)"
        out.append(f"| {name} | {mean:+.3f} | {sides} | {protocol or '—'} |")
    if source:
        out += ["", f"From `{source}`, target set `all`."]
    return "\n".join(out) + "\n"


def run_cost(run: str | Path) -> str:
    """One line: a run's measured compute, its benchmark files summed (``s``: the budget's
    wall job-seconds; ``cpu_time``), recomputable from ``{run}/benchmarks/``."""
    from stepattr.core.io import read_benchmark

    files = sorted((Path(run) / "benchmarks").rglob("*.tsv"))
    if not files:
        return f"No benchmark files under `{run}/benchmarks/`."
    measured = [read_benchmark(f) for f in files]
    wall, cpu = sum(w for w, _ in measured), sum(c for _, c in measured)
    return (
        f"Measured compute: {len(files)} benchmarked jobs, {wall:,.0f} wall job-seconds and "
        f"{cpu:,.0f} CPU-seconds (the benchmark files under `{run}/benchmarks/`, summed)."
    )


def read_results(run: str | Path) -> tuple[Any, Any | None]:
    """A run's ``tables/lds.csv`` and, where it exists, ``tables/lds_dtrak.csv``."""
    import pandas as pd

    tables = Path(run) / "tables"
    lds = pd.read_csv(tables / "lds.csv")
    dtrak_file = tables / "lds_dtrak.csv"
    return lds, pd.read_csv(dtrak_file) if dtrak_file.exists() else None


def first_difference(want: str, have: str, names: Sequence[str] = ("expected", "found")) -> str:
    """A few lines around the first line where two texts differ (for the check's message)."""
    import difflib

    diff = difflib.unified_diff(
        have.splitlines(), want.splitlines(), names[1], names[0], lineterm="", n=1
    )
    return "\n".join(list(diff)[:12])
