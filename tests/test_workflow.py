"""The workflow as a whole: lint, dry runs of every config, and the whole DAG on ci.yaml."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CONFIGS = ["config/config.yaml", "config/ci.yaml", "config/cifar10.yaml"]


def run_snakemake(exe: str, repo: Path, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, *args], cwd=repo, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_lint_is_clean(snakemake_exe: str, repo: Path) -> None:
    proc = run_snakemake(snakemake_exe, repo, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("configfile", CONFIGS)
def test_dry_run_every_config(snakemake_exe: str, repo: Path, configfile: str, tmp_path: Path) -> None:
    proc = run_snakemake(
        snakemake_exe, repo, "-n", "--quiet", "rules", "--cores", "1",
        "--configfile", configfile, "--config", f"outdir={tmp_path}/results",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
