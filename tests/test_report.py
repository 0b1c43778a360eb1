"""The HTML report lists every figure and table; each figure rebuilds alone.

The report test reuses the session's ci run (``ci_run`` in conftest.py). The dry-run tests
read the job counts that ``snakemake -n --quiet rules <target>`` prints for one figure on the
default config, and check that rules unrelated to that figure are not scheduled.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stepattr.core.provenance import describe_config
from stepattr.workflow.configs import load_config

CONFIG = "config/config.yaml"


def report_files(outdir: Path) -> list[Path]:
    """What the report must list: every figure (PNG, GIF) and every table (CSV)."""
    figures = sorted((outdir / "figures").rglob("*.png")) + sorted(
        (outdir / "figures").rglob("*.gif")
    )
    figures += sorted((outdir / "targets").glob("*.png"))
    return figures + sorted((outdir / "tables").glob("*.csv"))


def test_report_lists_every_figure_and_table(ci_run: Path, run_snakemake, tmp_path: Path):
    html = tmp_path / "report.html"
    proc = run_snakemake(
        "--configfile",
        "config/ci.yaml",
        "--config",
        f"outdir={ci_run}",
        "--report",
        str(html),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = html.read_text()
    assert "<html" in text.lower()
    expected = report_files(ci_run)
    names = {p.name for p in expected}
    assert {"influencers.png", "patches.png", "lds.png", "transitions.png", "lds.csv"} <= names
    assert any(p.suffix == ".gif" for p in expected)
    missing = [
        str(p.relative_to(ci_run)) for p in expected if str(p.relative_to(ci_run)) not in text
    ]
    assert not missing, f"not in the report: {missing}"
    # self-contained: the images are embedded, nothing is linked from disk
    assert text.count("data:image/png") >= sum(p.suffix == ".png" for p in expected)


def scheduled_jobs(run_snakemake, outdir: Path, target: str) -> dict[str, int]:
    """Rule -> job count of a dry run building only ``target`` (default config, fresh outdir)."""
    proc = run_snakemake(
        f"{outdir}/{target}",
        "-n",
        "--quiet",
        "rules",
        "--cores",
        "1",
        "--configfile",
        CONFIG,
        "--config",
        f"outdir={outdir}",
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout.split("Job stats:")[-1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}
    assert counts.get("total"), proc.stdout
    return counts


@pytest.fixture(scope="module")
def default_config(repo: Path) -> dict:
    return load_config([repo / CONFIG])


# target -> (rules that must be scheduled, rules that must not)
ALONE = {
    "figures/lds.png": (
        {"lds", "lds_figure", "retrain"},
        {"feature_curves", "transition_figure", "influencer_overview", "patch_features"},
    ),
    "figures/transitions.png": (
        {"feature_curves", "transition_figure"},
        {"lds", "baseline_scores", "embedding_scores", "patch_features", "influencer_overview"},
    ),
    "figures/influencers.png": (
        {"influencer_overview", "score"},
        {"feature_curves", "train_classifier", "lds", "influencer_figure", "patch_features"},
    ),
    "figures/patches.png": (
        {"patch_features", "patch_scores", "patch_figure"},
        {"feature_curves", "train_classifier", "lds", "influencer_figure", "influencer_overview"},
    ),
    "figures/influencers/generated_0.png": (
        {"influencer_figure"},
        {"feature_curves", "lds", "influencer_overview", "patch_figure"},
    ),
}


@pytest.mark.parametrize("target", sorted(ALONE))
def test_figure_builds_alone(run_snakemake, tmp_path: Path, default_config, target):
    jobs = scheduled_jobs(run_snakemake, tmp_path / "results", target)
    needed, unrelated = ALONE[target]
    assert needed <= set(jobs), jobs
    assert not unrelated & set(jobs), jobs
    sub = default_config["subsets"]
    heldout, scored = sub["heldout"] * sub["seeds"], sub["count"] * sub["seeds"]
    if "lds" not in jobs:  # lambda needs the held-out subset models, never the scored ones
        assert jobs.get("retrain", 0) <= heldout < heldout + scored
        assert jobs.get("eval_subset_outputs", 0) <= heldout
    if target != "figures/lds.png":  # one TRAK method, not every method of the LDS table
        models, shards = (
            default_config["models"]["full"]["count"],
            default_config["attribution"]["shards"],
        )
        assert jobs.get("featurize_train", 0) <= models * shards
    if target == "figures/influencers/generated_0.png":
        assert jobs["influencer_figure"] == 1


def test_tables_and_figures_name_config_files_then_overrides() -> None:
    provenance = {
        "config_files": ["config/config.yaml", "config/ci.yaml"],
        "config_overrides": {"outdir": "results/x"},
    }
    assert describe_config(provenance) == (
        "config/config.yaml, config/ci.yaml; overrides {'outdir': 'results/x'}"
    )
    assert describe_config({"config_files": [], "config_overrides": {}}) == "(no config file)"
