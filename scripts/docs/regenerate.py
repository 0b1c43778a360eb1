"""Rewrite the generated parts of the docs from the tools that know them, or check them.

    python scripts/docs/regenerate.py                 # config/README.md, docs/cluster.md's
                                                      # cost tables, docs/rulegraph.{dot,png}
    python scripts/docs/regenerate.py --check         # write nothing; exit 1 naming each
                                                      # checked-in copy that differs
    python scripts/docs/regenerate.py config cost     # only some parts
    python scripts/docs/regenerate.py results --run results   # the results block of README
                                                      # and docs/results.md, from a finished
                                                      # run's tables/lds*.csv and benchmarks/

Run from the repository root (the tools dry-run the workflow there). What each part is, and
the markers that delimit it in its document: stepattr.workflow.docs. The rule graph's PNG is
drawn by Graphviz's ``dot`` where it is installed (``apt-get install graphviz``); the check
compares the DOT text, which needs no Graphviz.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from stepattr.workflow.docs import (
    COST_TABLES,
    canonical_rulegraph,
    config_readme,
    first_difference,
    read_results,
    replace_block,
    results_summary,
    run_cost,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG_README = "config/README.md"
CLUSTER = "docs/cluster.md"
RULEGRAPH = "docs/rulegraph.dot"
RULEGRAPH_PNG = "docs/rulegraph.png"
README = "README.md"
RESULTS = "docs/results.md"


def config_part() -> dict[str, str]:
    path = REPO / CONFIG_README
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return {
        CONFIG_README: replace_block(path.read_text(), "config", config_readme(schema, default))
    }


def sd_standins(root: Path) -> list[str]:
    """``--config`` values that let config/sd.yaml dry-run here: a folder of SD v1.5's configs
    (no weights), a CLIP config and an image folder of one image and empty CSVs
    (tests/tiny_models.skeleton_sd15)."""
    sys.path.insert(0, str(REPO / "tests"))
    from PIL import Image
    from tiny_models import skeleton_sd15

    pipeline = skeleton_sd15(root)
    images = root / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "0.png")
    for name in ("labels.csv", "captions.csv"):  # prepare_data's inputs (read by jobs only)
        (images / name).write_text("")
    return [
        f"pipeline={{path: {pipeline}, transitions: {{clip: {root / 'clip-vit-large-patch14'}}}}}",
        f"dataset={{path: {images}}}",
    ]


def cost_table(configfile: str, extra: list[str]) -> str:
    cmd = [sys.executable, "-m", "stepattr.workflow.cost", "--configfile", configfile]
    proc = subprocess.run(
        cmd + (["--config", *extra] if extra else []),
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def cost_part() -> dict[str, str]:
    text = (REPO / CLUSTER).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        for name, configfile in COST_TABLES.items():
            extra = sd_standins(Path(tmp)) if configfile == "config/sd.yaml" else []
            text = replace_block(text, name, cost_table(configfile, extra))
    return {CLUSTER: text}


def rulegraph_dot() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--rulegraph"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"snakemake --rulegraph failed:\n{proc.stderr[-3000:]}")
    return canonical_rulegraph(proc.stdout)


def rulegraph_part() -> dict[str, str]:
    return {RULEGRAPH: rulegraph_dot()}


def draw_rulegraph() -> None:
    """docs/rulegraph.png from docs/rulegraph.dot, where Graphviz is installed."""
    dot = shutil.which("dot")
    if dot is None:
        print(f"regenerate: no Graphviz `dot` on PATH; {RULEGRAPH_PNG} left as it is")
        return
    subprocess.run(
        [dot, "-Tpng", "-o", str(REPO / RULEGRAPH_PNG), str(REPO / RULEGRAPH)],
        check=True,
    )


def results_part(run: str) -> dict[str, str]:
    """The results block of README.md and docs/results.md: the run's LDS summary and its
    measured compute."""
    lds, dtrak = read_results(run)
    body = results_summary(lds, dtrak, source=f"{run}/tables/lds.csv") + "\n" + run_cost(run)
    body += "\n"
    return {
        name: replace_block((REPO / name).read_text(), "results", body)
        for name in (README, RESULTS)
    }


PARTS = {"config": config_part, "cost": cost_part, "rulegraph": rulegraph_part}


def stale_files(wanted: dict[str, str], root: Path = REPO) -> list[str]:
    """For each generated document whose copy under ``root`` differs from ``wanted``: its
    name and the first lines that differ."""
    stale = []
    for name, text in wanted.items():
        path = root / name
        have = path.read_text() if path.exists() else ""
        if have != text:
            diff = first_difference(text, have, (f"{name} (tools)", f"{name} (checked in)"))
            stale.append(f"{name} differs from what the tools print now:\n{diff}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "parts", nargs="*", help="config, cost, rulegraph, results (default: the first three)"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a change")
    parser.add_argument("--run", help="results: the outdir of a finished run (its tables/)")
    args = parser.parse_args(argv)
    parts = args.parts or list(PARTS)
    unknown = [p for p in parts if p not in (*PARTS, "results")]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: expected {', '.join(PARTS)}, results")
    if "results" in parts and not args.run:
        parser.error("results needs --run <outdir of a finished run>")
    wanted: dict[str, str] = {}
    for part in parts:
        wanted |= results_part(args.run) if part == "results" else PARTS[part]()
    if args.check:
        stale = stale_files(wanted)
        for message in stale:
            print(message)
        if stale:
            print("regenerate them: python scripts/docs/regenerate.py " + " ".join(parts))
        return 1 if stale else 0
    changed = []
    for name, text in wanted.items():
        path = REPO / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
            print(f"regenerate: wrote {name}")
    if RULEGRAPH in changed or ("rulegraph" in parts and not (REPO / RULEGRAPH_PNG).exists()):
        draw_rulegraph()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
