"""Compute estimates (stepattr.workflow.cost): dry-run parsing, scaling with config, cost table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stepattr.workflow.cost import (
    cost_table,
    featurize_mem_mb,
    gather_mem_mb,
    influence_mem_mb,
    job_seconds,
    markdown,
    num_unet_parameters,
    parse_job_counts,
    pipeline_transition_passes,
    score_mem_mb,
    split_mem_mb,
    torch_mem_mb,
)

DRY_RUN = """Building DAG of jobs...
Job stats:
job                 count
----------------  -------
all                     1
train                   2
retrain                16
featurize_train         8
total                  27
"""


@pytest.fixture(scope="module")
def default_cfg(repo: Path) -> dict:
    return yaml.safe_load((repo / "config/config.yaml").read_text())


def test_parse_job_counts_reads_the_job_stats_table() -> None:
    assert parse_job_counts(DRY_RUN) == {"all": 1, "train": 2, "retrain": 16, "featurize_train": 8}
    with pytest.raises(ValueError, match="Job stats"):
        parse_job_counts("Nothing to be done.")


def test_estimates_scale_with_the_config(default_cfg: dict) -> None:
    one = job_seconds(default_cfg, "train", "cpu")
    longer = {
        **default_cfg,
        "train": {**default_cfg["train"], "steps": 2 * default_cfg["train"]["steps"]},
    }
    assert job_seconds(longer, "train", "cpu") == pytest.approx(2 * one)
    assert job_seconds(default_cfg, "train", "cuda") < one  # the GPU is faster
    # shared batches train on about alpha of each batch
    sub = default_cfg["subsets"]
    steps = sub["train_steps"] or default_cfg["train"]["steps"]  # null: the full models' recipe
    expected = one * steps / default_cfg["train"]["steps"] * sub["alpha"]
    assert job_seconds(default_cfg, "retrain", "cpu") == pytest.approx(expected)
    dense = job_seconds(default_cfg, "featurize_train", "cpu", "rademacher")
    factored = job_seconds(default_cfg, "featurize_train", "cpu", "factored")
    assert factored < dense
    assert job_seconds(default_cfg, "lds", "cpu") is None  # light rules are not modelled
    fit = job_seconds(default_cfg, "fit_influence_factors", "cpu")
    half = {**default_cfg, "influence": {**default_cfg["influence"], "fit_examples": 500}}
    assert job_seconds(half, "fit_influence_factors", "cpu") == pytest.approx(fit / 2)
    scoring = job_seconds(default_cfg, "influence_model_scores", "cpu")
    fewer = {**default_cfg, "influence": {**default_cfg["influence"], "dampings": [1.0]}}
    assert 0 < job_seconds(fewer, "influence_model_scores", "cpu") < scoring


def test_cost_table_multiplies_job_counts(default_cfg: dict) -> None:
    counts = parse_job_counts(DRY_RUN)
    rows = cost_table(default_cfg, counts, "cpu")
    assert [row["rule"] for row in rows if row["rule"] == "all"] == []
    by_rule = {row["rule"]: row for row in rows}
    assert by_rule["retrain"]["hours"] == pytest.approx(16 * by_rule["retrain"]["hours_per_job"])
    assert [row["hours"] for row in rows] == sorted((row["hours"] for row in rows), reverse=True)
    text = markdown(rows, "cpu", "config/config.yaml")
    assert "| retrain | 16 |" in text and "**total** | 26 |" in text


def test_cli_prints_the_table_of_a_real_config(repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stepattr.workflow.cost", "--configfile", "config/cifar2.yaml"],
        cwd=repo, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| retrain | 216 |" in proc.stdout  # 64 + 8 subsets x 3 seeds
    assert "GPU-h" in proc.stdout


def test_lora_parameters_of_sd15_at_rank_4_are_diffusers_count() -> None:
    """Stable Diffusion v1.5's UNet with rank-4 adapters on its attention projections has
    797,184 trainable parameters (the count diffusers' LoRA training prints); the features of
    the stable_diffusion family are projected from these, not from the 860M of the base."""
    from stepattr.workflow.cost import attributed_parameters

    sd15 = {"family": "stable_diffusion", "text_encoder": {"width": 768},
            "model": {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
                      "attention_levels": [0, 1, 2]},
            "pipeline": {"lora": {"rank": 4}}}  # fmt: skip
    assert attributed_parameters(sd15) == 797_184
    assert attributed_parameters(sd15 | {"pipeline": {"lora": {"rank": 64}}}) == 16 * 797_184
    pixel = sd15 | {"family": "pixel"}
    assert attributed_parameters(pixel) > 100 * attributed_parameters(sd15)


def test_pipeline_transitions_are_priced_by_their_unet_passes(
    default_cfg: dict, tmp_path: Path
) -> None:
    """One trajectory of S steps, then N completions from each grid step: with S = 10 and the
    grid (900, 500, 0), 9 + 5 + 1 steps are left; a pipeline sampling latents twice the
    training side costs 4x."""
    transitions = {**default_cfg["pipeline"]["transitions"], "inference_steps": 10,
                   "completions": 4, "trajectories": 3, "prompts": ["", "a 7"]}  # fmt: skip
    cfg = {**default_cfg, "pipeline": {**default_cfg["pipeline"], "transitions": transitions},
           "sampling": {**default_cfg["sampling"], "grid": [900, 500, 0]}}  # fmt: skip
    assert pipeline_transition_passes(cfg) == 2 * 3 * (10 + 4 * (9 + 5 + 1))
    guided = {**cfg, "pipeline": {**cfg["pipeline"],
                                  "transitions": {**transitions, "guidance": 7.5}}}  # fmt: skip
    assert pipeline_transition_passes(guided) == 2 * pipeline_transition_passes(cfg)
    assert job_seconds(guided, "pipeline_transitions", "cpu") == pytest.approx(
        2 * job_seconds(cfg, "pipeline_transitions", "cpu")
    )
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"sample_size": 32}')  # the default: 16
    larger = {**cfg, "pipeline": {**cfg["pipeline"], "path": str(tmp_path)}}
    assert pipeline_transition_passes(larger) == 4 * pipeline_transition_passes(cfg)


def with_key(cfg: dict, section: str, key: str, value) -> dict:
    return cfg | {section: cfg[section] | {key: value}}


def test_memory_requests_grow_with_what_the_job_holds(default_cfg: dict) -> None:
    # activations are linear in the batch, on top of torch's 2 GB
    assert torch_mem_mb(default_cfg, 0) == 2000
    assert torch_mem_mb(default_cfg, 128) - 2000 == pytest.approx(
        2 * (torch_mem_mb(default_cfg, 64) - 2000), abs=1
    )
    # the score job's float64 kernels are quadratic in proj_dim
    kernels = [
        score_mem_mb(with_key(default_cfg, "attribution", "proj_dim", k))
        for k in (1024, 4096, 16384)
    ]
    assert kernels[2] - kernels[1] > 4 * (kernels[1] - kernels[0])
    assert gather_mem_mb(with_key(default_cfg, "attribution", "proj_dim", 8192)) > gather_mem_mb(
        default_cfg
    )
    more = with_key(
        default_cfg, "influence", "batch_size", 4 * default_cfg["influence"]["batch_size"]
    )
    assert influence_mem_mb(more) > influence_mem_mb(default_cfg)


def test_cpu_featurization_holds_the_projection_matrix_up_to_4_gib(default_cfg: dict) -> None:
    p, k = num_unet_parameters(default_cfg), default_cfg["attribution"]["proj_dim"]
    extra = featurize_mem_mb(default_cfg, gpu=False) - featurize_mem_mb(default_cfg, gpu=True)
    assert extra == pytest.approx(1.25 * min(4 * p * k, 2**32) / 1e6, abs=1)
    # the default config's measured peak: 5.2 GB (the estimate keeps a 1.25 margin over it)
    assert 5200 <= featurize_mem_mb(default_cfg, gpu=False) <= 1.3 * 5200
    huge = with_key(default_cfg, "attribution", "proj_dim", 10**6)
    huge_extra = featurize_mem_mb(huge, gpu=False) - featurize_mem_mb(huge, gpu=True)
    assert huge_extra == pytest.approx(1.25 * 2**32 / 1e6, abs=1)


def test_split_memory_is_at_least_what_preparing_the_source_takes(default_cfg: dict) -> None:
    coco = with_key(default_cfg, "dataset", "source", "coco")
    assert split_mem_mb(coco, 2000) == 16000
    assert split_mem_mb(coco, 20000) == 20000
    assert split_mem_mb(with_key(default_cfg, "dataset", "source", "mnist5k"), 4000) == 4000
