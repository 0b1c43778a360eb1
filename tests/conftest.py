"""Shared test fixtures: repo paths, the snakemake executable, tiny configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stepattr.workflow.configs import load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is fastest, and the suite may share the machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ci_model_cfg(repo: Path) -> dict:
    """The `model` section of config/ci.yaml: the tiny UNet of the unit tests."""

    return load_config([repo / "config" / "ci.yaml"])["model"]


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    """The snakemake beside this interpreter (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name("snakemake")
    found = str(local) if local.exists() else shutil.which("snakemake")
    if not found:
        pytest.fail("snakemake is not installed in this environment")
    return found


@pytest.fixture(scope="session")
def run_snakemake(snakemake_exe: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_snakemake(*args, env=None, timeout=3600)``: snakemake in the repository, its output
    captured; a failed run is returned, not raised (tests assert on it)."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: int = 3600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [snakemake_exe, *args], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    return run


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory: pytest.TempPathFactory, run_snakemake) -> Path:
    """Run the whole DAG once on config/ci.yaml into a temporary outdir; return that outdir.

    Session-scoped so the integration test and the report test share one run. Where
    STEPATTR_CI_OUTDIR names the outdir of a finished ci run (e.g. results/ci), the tests
    read that one instead of running the DAG again.
    """
    given = os.environ.get("STEPATTR_CI_OUTDIR")
    if given:
        return Path(given).resolve()
    outdir = tmp_path_factory.mktemp("ci") / "results"
    proc = run_snakemake(
        "--cores", "2", "--configfile", "config/ci.yaml", "--config", f"outdir={outdir}"
    )
    if proc.returncode != 0:
        pytest.fail(f"the ci DAG failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return outdir


@pytest.fixture(scope="session")
def sd_pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pipeline folders for the Stable Diffusion configs' checks and dry runs: a tiny real one
    (random weights) for config/digits_sd.yaml, SD v1.5's configs without weights for
    config/sd.yaml, each config's CLIP folder ("clip:<config>", the transitions' detector), and
    the image folder sd.yaml names (one image, its CSVs empty: config checks and dry runs
    only)."""
    from PIL import Image
    from tiny_models import skeleton_sd15, tiny_pipeline

    root = tmp_path_factory.mktemp("sd_pipelines")
    images = root / "artbench2"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "0.png")  # the config check wants an image
    for name in ("labels.csv", "captions.csv"):
        (images / name).write_text("")
    return {
        "config/digits_sd.yaml": tiny_pipeline(root),
        "config/sd.yaml": skeleton_sd15(root),
        "clip:config/digits_sd.yaml": root / "parts" / "text" / "clip",
        "clip:config/sd.yaml": root / "clip-vit-large-patch14",
        "images": images,
    }
