"""Numbers in the docs come from the tools: the checked-in copies match what they print now.

scripts/docs/regenerate.py writes config/README.md's key tables (from config/schema.yaml),
docs/cluster.md's cost tables (python -m stepattr.workflow.cost) and docs/rulegraph.dot
(snakemake --rulegraph); here they are regenerated (dry runs only, ~1-2 min) and compared with
the checked-in copies. The README's results table is written from a run's tables; its
summary is tested on a synthetic table.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stepattr.workflow.docs import (
    canonical_rulegraph,
    config_readme,
    read_block,
    replace_block,
    results_summary,
    undescribed_keys,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", REPO / "scripts/docs/regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(regenerate) -> dict[str, str]:
    """What the tools print now: every generated document, by path."""
    return {**regenerate.config_part(), **regenerate.rulegraph_part(), **regenerate.cost_part()}


def test_generated_docs_are_current(regenerate, generated: dict[str, str]) -> None:
    stale = regenerate.stale_files(generated, REPO)
    assert not stale, (
        "out of date (python scripts/docs/regenerate.py rewrites them):\n" + "\n".join(stale)
    )
    cluster = (REPO / "docs/cluster.md").read_text()
    assert "| retrain | 216 |" in read_block(cluster, "cost:cifar2")
    assert '[label = "influence_scores"' in (REPO / "docs/rulegraph.dot").read_text()


def test_a_hand_edited_cost_table_fails_the_check(
    regenerate, generated: dict[str, str], tmp_path: Path
) -> None:
    """A number typed into docs/cluster.md by hand is reported, with the line that differs."""
    for name in generated:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    cluster = tmp_path / "docs/cluster.md"
    table = read_block(cluster.read_text(), "cost:cifar2")
    total = next(line for line in table.splitlines() if line.startswith("| **total**"))
    cluster.write_text(cluster.read_text().replace(total, "| **total** | 777 | | **59.5** |"))
    stale = regenerate.stale_files(generated, tmp_path)
    assert len(stale) == 1 and stale[0].startswith("docs/cluster.md differs")
    assert "-| **total** | 777 | | **59.5** |" in stale[0]
    assert f"+{total}" in stale[0]


def test_every_schema_key_is_described(repo: Path) -> None:
    schema = yaml.safe_load((repo / "config/schema.yaml").read_text())
    assert undescribed_keys(schema) == []


def test_config_readme_lists_every_key(repo: Path) -> None:
    schema = yaml.safe_load((repo / "config/schema.yaml").read_text())
    default = yaml.safe_load((repo / "config/config.yaml").read_text())
    text = config_readme(schema, default)
    for key in ("outdir", "dataset.path", "attribution.projector", "counterfactual.pairs[].step",
                "pipeline.lora.rank", "pipeline.transitions.features[].prompts"):  # fmt: skip
        assert f"| `{key}` |" in text, key
    assert "| `device` | one of: auto, cpu, cuda | `auto` |" in text
    assert "| `subsets.alpha` | a number in (0, 1) | `0.5` |" in text


def test_replace_block_keeps_the_text_around() -> None:
    text = "intro\n<!-- part:start -->\nold\n<!-- part:end -->\noutro\n"
    new = replace_block(text, "part", "new\n")
    assert new == "intro\n<!-- part:start -->\nnew\n<!-- part:end -->\noutro\n"
    assert read_block(new, "part").strip() == "new"
    with pytest.raises(ValueError, match="expected one"):
        replace_block("no markers", "part", "x")


def test_rulegraph_edges_in_a_fixed_order() -> None:
    """Snakemake prints the rule graph's edges in a different order from run to run."""
    head = 'digraph snakemake_dag {\n\t0[label = "all", color = "0.0 0.6 0.85"];\n'
    nodes = '\t1[label = "train"];\n\t2[label = "data"];\n'
    one = "log line\n" + head + nodes + "\t2 -> 1\n\t1 -> 0\n\t2 -> 0\n}\n"
    two = head + nodes + "\t2 -> 0\n\t2 -> 1\n\t1 -> 0\n}\n"
    assert canonical_rulegraph(one) == canonical_rulegraph(two)
    assert canonical_rulegraph(one).startswith("digraph")


def synthetic_lds() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for method, label, values in [
        ("trak", "TRAK (lambda 100)", [0.3, 0.1, 0.2]),
        ("random", "random", [0.0, -0.3, 0.05]),
        ("ceiling", "retraining ceiling", [0.6, 0.5, 0.7]),
    ]:
        for step, lds in zip((900, 500, 0), values, strict=True):
            for target_set in ("all", "generated"):
                rows.append({"method": method, "label": label, "target_set": target_set,
                             "step": step, "lds": lds, "ci_low": lds - 0.15,
                             "ci_high": lds + 0.15, "n_targets": 8, "n_excluded": 0})  # fmt: skip
    dtrak = pd.DataFrame(
        [{"method": "trak", "label": "TRAK", "target_set": "all", "lds": 0.12, "ci_low": -0.01,
          "ci_high": 0.25, "n_targets": 8, "n_excluded": 0},
         {"method": "trak", "label": "TRAK", "target_set": "generated", "lds": 0.9,
          "ci_low": 0.8, "ci_high": 1.0, "n_targets": 4, "n_excluded": 0}]
    )  # fmt: skip
    return pd.DataFrame(rows), dtrak


def test_results_summary_from_a_run_table(tmp_path: Path, regenerate) -> None:
    lds, dtrak = synthetic_lds()
    text = results_summary(lds, dtrak, source="results/tables/lds.csv")
    lines = text.splitlines()
    assert lines[2] == "| `trak` (TRAK (lambda 100)) | +0.200 | 2 of 3 | +0.120 [-0.010, +0.250] |"
    assert lines[3] == "| `random` | -0.083 | 1 of 3 (0 above, 1 below) | — |"
    assert lines[4].startswith("| retraining ceiling (seed agreement) | +0.600 | 3 of 3 |")
    assert "From `results/tables/lds.csv`, target set `all`." in text
    # the CLI writes it between the README's markers, from a run's tables/
    (tmp_path / "tables").mkdir()
    lds.to_csv(tmp_path / "tables/lds.csv", index=False)
    dtrak.to_csv(tmp_path / "tables/lds_dtrak.csv", index=False)
    (tmp_path / "benchmarks/train").mkdir(parents=True)
    for name, wall, cpu in (("full_0", 100.5, 90.0), ("subset_0", 20.0, 19.5)):
        (tmp_path / f"benchmarks/train/{name}.tsv").write_text(
            f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:01:40\t100\t{cpu}\n"
        )
    written = regenerate.results_part(str(tmp_path))
    readme = written["README.md"]
    assert "| `trak` (TRAK (lambda 100)) | +0.200 |" in read_block(readme, "results")
    assert read_block(written["docs/results.md"], "results") == read_block(readme, "results")
    assert "2 benchmarked jobs, 120 wall job-seconds and 110 CPU-seconds" in readme
    assert (
        readme.split("<!-- results:start -->")[0]
        == (REPO / "README.md").read_text().split("<!-- results:start -->")[0]
    )
