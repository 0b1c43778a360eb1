"""The workflow as a whole: lint, dry runs of every config, and the whole DAG on ci.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepattr.lds.tables import CEILING
from stepattr.workflow.configs import load_config

CONFIGS = [
    "config/config.yaml",
    "config/ci.yaml",
    "config/cifar10.yaml",
    "config/cifar2.yaml",
    "config/lds.yaml",
    "config/digits_t2i.yaml",
    "config/coco.yaml",
]


def test_lint_is_clean(run_snakemake) -> None:
    proc = run_snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("configfile", CONFIGS)
def test_dry_run_every_config(run_snakemake, configfile: str, tmp_path: Path) -> None:
    proc = run_snakemake(
        "-n",
        "--quiet",
        "rules",
        "--cores",
        "1",
        "--configfile",
        configfile,
        "--config",
        f"outdir={tmp_path}/results",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("configfile", ["config/digits_sd.yaml", "config/sd.yaml"])
def test_dry_run_stable_diffusion_configs(
    run_snakemake, configfile: str, tmp_path: Path, sd_pipelines
) -> None:
    """On a pipeline folder (tiny, or SD v1.5's configs); without one the error names the key."""
    args = ["-n", "--quiet", "rules", "--cores", "1", "--configfile", configfile, "--config"]
    found = run_snakemake(
        *args, f"outdir={tmp_path}/results",
        f"pipeline={{path: {sd_pipelines[configfile]}, "
        f"transitions: {{clip: {sd_pipelines['clip:' + configfile]}}}}}",
        f"dataset={{path: {sd_pipelines['images']}}}",
    )  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr
    assert "fine_tune_effect" in found.stdout + found.stderr
    assert "pipeline_transitions" in found.stdout + found.stderr
    assert "export_lora" in found.stdout + found.stderr
    missing = run_snakemake(*args, f"outdir={tmp_path}/results", "pipeline={path: nowhere}")
    assert missing.returncode != 0
    assert "invalid config: pipeline.path = 'nowhere'" in missing.stdout + missing.stderr


def test_whole_dag_on_ci_config(ci_run: Path, run_snakemake, repo: Path) -> None:
    """The ci DAG ran; its outputs fit together; a second run has nothing left to do."""
    import numpy as np
    import pandas as pd

    cfg = load_config([repo / "config/ci.yaml"])
    with np.load(ci_run / f"data/{cfg['dataset']['name']}/train.npz") as train:
        n_train = len(train["labels"])
    n_targets = cfg["sampling"]["num_targets"] + cfg["sampling"]["num_validation"]
    grid = cfg["sampling"]["grid"]
    for method in ("trak", "dtrak"):
        scores = np.load(ci_run / f"scores/{method}/scores.npy", mmap_mode="r")
        assert scores.shape == (n_targets, len(grid), n_train)
        assert np.isfinite(scores).all()
        index = pd.read_csv(ci_run / f"scores/{method}/index.csv")
        assert len(index) == n_targets
    for method in ("ekfac", "kfac", "ekfac_sqnorm", "kfac_sqnorm"):
        scores = np.load(ci_run / f"scores/{method}/scores.npy", mmap_mode="r")
        assert scores.shape == (n_targets, len(grid), n_train) and np.isfinite(scores).all()
    lds = pd.read_csv(ci_run / "tables/lds.csv")
    assert {"trak", "dtrak", "ekfac", "kfac", "pixel", "random"} <= set(lds["method"])
    fresh = pd.read_csv(ci_run / "tables/lds_fresh_noise.csv")
    key = ["method", "target_set", "step"]
    assert fresh[key].equals(lds[key])  # the same rows, scored against the fresh-noise f_t
    assert not np.allclose(fresh["lds"], lds["lds"], equal_nan=True)
    assert "## Against fresh noise" in (ci_run / "tables/lds.md").read_text()
    # two seeds per subset (the default's, which ci.yaml inherits): the retraining ceiling
    assert cfg["subsets"]["seeds"] >= 2 and CEILING in set(lds["method"])
    assert CEILING in set(pd.read_csv(ci_run / "tables/lds_dtrak.csv")["method"])
    assert "## Against the noise bound" in (ci_run / "tables/lds.md").read_text()
    paired = pd.read_csv(ci_run / "tables/lds_paired.csv")
    assert set(paired["reference"]) == {"trak"} and "ekfac" in set(paired["method"])
    compared = set(lds["method"]) - {"trak", CEILING}  # every method against TRAK
    assert len(paired) == len(compared) * len(set(lds["target_set"])) * len(grid)
    for name in ("lds.png", "influencers.png", "transitions.png", "counterfactual.png"):
        assert (ci_run / "figures" / name).stat().st_size > 0, name
    again = run_snakemake(
        "-n", "--cores", "1",
        "--configfile", "config/ci.yaml", "--config", f"outdir={ci_run}",
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


@pytest.mark.integration
def test_text_to_image_family_runs_on_ci_settings(run_snakemake, tmp_path: Path) -> None:
    """The text-to-image family's DAG (data with captions, autoencoder, text encoder,
    conditional UNet, prompt following, prompted latent targets, TRAK under the prompts, LDS,
    transitions from decoded completions) end to end at ci.yaml's sizes."""
    import numpy as np
    import pandas as pd

    outdir = tmp_path / "results"
    proc = run_snakemake(
        "--cores", "2", "--configfile", "config/digits_t2i.yaml", "config/ci.yaml",
        "config/ci_t2i.yaml", "--config", f"outdir={outdir}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = pd.read_csv(outdir / "tables/prompt_following.csv")
    assert set(table["guidance"]) == {1.0, 3.0}
    pooled = table[table["prompt"] == "(all prompts)"]
    assert (pooled["n"] == 20).all() and pooled["rate"].between(0, 1).all()
    meta = pd.read_json(outdir / "models/full_0/config.json", typ="series")
    assert meta["unet_class"] == "UNet2DConditionModel"
    for name in ("autoencoder.png", "prompts.png", "lds.png", "influencers.png",
                 "influencers/generated_0.png", "animations/generated_3.gif"):  # fmt: skip
        assert (outdir / "figures" / name).stat().st_size > 0, name
    prompts = [f"a handwritten digit {i}" for i in range(4)]  # target i under prompt i mod 10
    with np.load(outdir / "targets/generated.npz") as targets:
        assert targets["prompt"].tolist() == prompts
        assert targets["label"].tolist() == [0, 1, 2, 3]
        assert targets["x0hat"].shape[2] == 4  # latents
        assert targets["decoded_x0hat"].shape[2] == 1  # images
    index = pd.read_csv(outdir / "scores/trak/index.csv")
    assert index["prompt"].tolist() == prompts
    scores = np.load(outdir / "scores/trak/scores.npy")
    assert scores.shape == (4, 3, 300) and np.isfinite(scores).all()
    lds = pd.read_csv(outdir / "tables/lds.csv")
    assert {"trak", "dtrak", "pixel", "random"} <= set(lds["method"])
    curves = pd.read_csv(outdir / "transitions/generated.csv")  # decoded completions
    assert len(curves) == 4 * 3 and curves["p"].between(0, 1).all()
    assert (outdir / "figures/transitions.png").stat().st_size > 0

    # the Stable Diffusion family on the pipeline this run exported: LoRA fine-tune, features
    # with respect to the adapters, LDS against LoRA retraining, what the fine-tune changes
    sd_out = tmp_path / "sd"
    proc = run_snakemake(
        "--cores", "2", "--configfile", "config/digits_sd.yaml", "config/ci.yaml",
        "config/ci_t2i.yaml", "config/ci_sd.yaml", "--config", f"outdir={sd_out}",
        f"pipeline={{path: {outdir}/pipeline, transitions: {{clip: {outdir}/text_encoder/clip}}}}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    meta = pd.read_json(sd_out / "models/full_0/config.json", typ="series")
    assert meta["lora"]["base"] == f"{outdir}/pipeline/unet"
    with np.load(sd_out / "data/mnist5k_ci/train.npz") as train:
        counts = np.bincount(train["labels"], minlength=10)
    assert counts[7] > counts[0] and np.delete(counts, 7).max() <= 20
    scores = np.load(sd_out / "scores/trak/scores.npy")
    assert scores.shape == (4, 3, counts.sum()) and np.isfinite(scores).all()
    lds = pd.read_csv(sd_out / "tables/lds.csv")
    assert {"trak", "dtrak", "pixel", "random"} <= set(lds["method"])
    effect = pd.read_csv(sd_out / "tables/fine_tune_effect.csv")
    assert (effect["base_count"].iloc[:-1].sum(), effect["fine_tuned_count"].iloc[:-1].sum()) == (
        8,
        8,
    )
    # the pretrained pipeline's own transitions: 2 prompts x 1 trajectory x 3 grid steps
    pipeline_curves = pd.read_csv(sd_out / "pipeline_transitions/curves.csv")
    assert len(pipeline_curves) == 2 * 3 and pipeline_curves["p"].between(0, 1).all()
    assert set(pipeline_curves["value"]) <= {f"a handwritten digit {d}" for d in range(10)}
    assert "predict within" in (sd_out / "logs/export_lora/export_lora.log").read_text()
    assert (sd_out / "pipeline/lora/pytorch_lora_weights.safetensors").stat().st_size > 0
    figures = ("fine_tune_effect.png", "influencers.png", "lds.png", "transitions.png",
               "pipeline_transitions.png")  # fmt: skip
    for name in figures:
        assert (sd_out / "figures" / name).stat().st_size > 0, name
