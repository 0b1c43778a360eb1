"""Measured runtimes of targets (stepattr.workflow.runtimes): dry-run parsing and benchmark sums."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepattr.core.io import read_benchmark
from stepattr.workflow.dry_run import dry_run
from stepattr.workflow.runtimes import (
    TargetRuntime,
    benchmark_paths,
    markdown,
    target_runtime,
)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_benchmark_paths_lists_every_job_and_its_benchmark() -> None:
    out = """Building DAG of jobs...
[Sat Nov 28 08:00:00 2026]
localrule train:
    input: results/data/train.npz
    output: results/models/full_0/model.safetensors
    log: results/logs/train/full_0.log
    benchmark: results/benchmarks/train/full_0.tsv
    jobid: 2
[Sat Nov 28 08:00:00 2026]
rule lds_figure:
    output: results/figures/lds.png
    jobid: 3
"""
    assert benchmark_paths(out) == (2, ["results/benchmarks/train/full_0.tsv"])


def test_read_benchmark_takes_wall_and_cpu_seconds(tmp_path: Path) -> None:
    path = tmp_path / "b.tsv"
    path.write_text(HEADER + "12.5\t0:00:12\t100\t200\t90\t95\t0\t1\t80\t10.25\n")
    assert read_benchmark(path) == (12.5, 10.25)


def test_markdown_estimates_wall_from_cpu_time_over_cores() -> None:
    row = TargetRuntime("results/figures/lds.png", 4, 3, 500.0, 600.0, 5.0)
    text = markdown([row], cores=2)
    row = "| `results/figures/lds.png` | 4 (3 measured) | 10.0 min | 5.0 min | 500 | 5 s |"
    assert row in text  # wall job-s: the summed benchmark ``s``, the cost budget's measure


def test_target_runtime_sums_the_benchmarks_of_a_finished_run(
    ci_run: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the session's ci run, a model from scratch is its data split and its training."""
    monkeypatch.chdir(repo)
    args = ["--configfile", "config/ci.yaml", "--config", f"outdir={ci_run}"]
    row = target_runtime(f"{ci_run}/models/full_0/model.safetensors", args)
    bench = ci_run / "benchmarks"
    split = read_benchmark(next((bench / "prepare_data").glob("*.tsv")))
    train = read_benchmark(bench / "train" / "full_0.tsv")
    assert (row.jobs, row.measured) == (2, 2)
    assert row.wall_s == pytest.approx(split[0] + train[0])
    assert row.cpu_s == pytest.approx(split[1] + train[1])
    assert row.own_s == train[0]
    figure = target_runtime(f"{ci_run}/figures/lds.png", args)  # needs many jobs, not all
    assert row.jobs < figure.measured < figure.jobs  # light rules (lds_figure) have none
    assert row.cpu_s < figure.cpu_s < sum(read_benchmark(p)[1] for p in bench.rglob("*.tsv"))


def test_dry_run_names_what_failed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(RuntimeError, match="no_such_config.yaml"):
        dry_run(["--configfile", "no_such_config.yaml"])
    with pytest.raises(ValueError, match="force"):
        dry_run([], force="all")
