"""Batched subset training equals one-model-at-a-time shared-batch training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import TINY_UNET, killed_at_step

from stepattr.core.diffusion import Schedule
from stepattr.training.batched import BatchedDiffusionTrainer
from stepattr.training.recipe import DiffusionTrainer, TrainSettings

CPU = torch.device("cpu")
# clipping active (tiny max norm), weight decay and EMA on: every per-model step is exercised
RECIPE_SECTION = {
    "steps": 5,
    "seed": 0,
    "batch_size": 8,
    "lr": 0.01,
    "warmup_steps": 3,
    "weight_decay": 0.1,
    "ema_decay": 0.9,
    "grad_clip": 0.05,
    "compile": False,
}
RECIPE = TrainSettings.from_config(RECIPE_SECTION)
# Adam divides by sqrt of the second moment, so float rounding of a near-zero gradient entry
# moves its first update by up to ~lr * 1e-2; any real difference (a clip, decay, skipped step
# or loss over the wrong examples) moves weights by ~lr per step or more.
ATOL = 2e-4


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(-1, 1, (40, 1, 8, 8)).astype(np.float32))
    keep = torch.from_numpy(rng.random((3, 40)) < 0.5)
    keep[2] = False
    keep[2, :3] = True  # a sparse subset: some of its batches keep no example at all
    return images, keep


def test_batched_equals_one_model_at_a_time(data, one_thread):
    images, keep = data
    batched = BatchedDiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, keep)
    singles = [DiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, k) for k in keep]
    for _ in range(8):
        losses = batched.train_step()
        torch.testing.assert_close(
            losses, torch.stack([s.train_step() for s in singles]), rtol=1e-4, atol=1e-6
        )
    skipped = 8 - batched.adam_steps
    assert skipped[2] > 0 and skipped[:2].eq(0).all(), "the sparse model must skip steps"
    for g, single in enumerate(singles):
        trained = dict(single.unet.named_parameters())
        ema = dict(single.ema.named_parameters())
        for name in batched.names:
            torch.testing.assert_close(batched.params[name][g], trained[name], rtol=0, atol=ATOL)
            torch.testing.assert_close(batched.ema[name][g], ema[name], rtol=0, atol=ATOL)
        module = batched.model(g)
        for name, value in single.final_model().state_dict().items():
            torch.testing.assert_close(module.state_dict()[name], value, rtol=0, atol=ATOL)


def test_batched_models_differ_by_their_data(data, one_thread):
    images, keep = data
    batched = BatchedDiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, keep[:2])
    for _ in range(3):
        batched.train_step()
    weight = batched.params["conv_in.weight"]
    assert (weight[0] - weight[1]).abs().max() > 1e-3


def test_batched_resume_equals_an_uninterrupted_run(data, one_thread):
    images, keep = data
    whole = BatchedDiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, keep)
    for _ in range(6):
        whole.train_step()
    first = BatchedDiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, keep)
    for _ in range(3):
        first.train_step()
    state = first.state_dict()
    resumed = BatchedDiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, keep)
    resumed.load_state_dict(state)
    for _ in range(3):
        resumed.train_step()
    for name in whole.names:
        assert torch.equal(whole.params[name], resumed.params[name]), name
        assert torch.equal(whole.ema[name], resumed.ema[name]), name


def test_batched_keep_must_be_a_bool_matrix_over_the_images(data):
    images, keep = data
    with pytest.raises(ValueError, match="keep must be a bool"):
        BatchedDiffusionTrainer(images, TINY_UNET, RECIPE, Schedule(), 5, CPU, keep[:, :10])


def test_group_job_writes_what_one_model_jobs_write_and_resumes(tmp_path, one_thread, monkeypatch):
    """train_group_and_save == train_and_save per subset row (shared batches), also after a
    kill mid-run: the group's saved state resumes."""
    from stepattr.core.diffusion import load_model
    from stepattr.core.io import save_json, save_npz
    from stepattr.training.jobs import train_and_save, train_group_and_save
    from stepattr.training.subsets import subset_masks

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    split, manifest = tmp_path / "train.npz", tmp_path / "manifest.json"
    save_npz(split, images=images, labels=np.zeros(40, dtype=np.int64), class_names=np.array(["a"]))
    save_json(manifest, {"dataset": "toy"})
    np.save(tmp_path / "masks.npy", subset_masks(40, count=3, heldout=0, alpha=0.5, seed=1))
    common = dict(
        train_split=split, manifest=manifest, model_cfg=TINY_UNET,
        train=TrainSettings.from_config(RECIPE_SECTION | {"checkpoint_every": 2}), diffusion_cfg={
            "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02},
        seed=5, steps=5, device=CPU, masks=tmp_path / "masks.npy", progress=False,
    )  # fmt: skip
    group = dict(
        out_dirs=[tmp_path / "group" / f"subset_{j}_s0" for j in (0, 2)],
        model_ids=["subset_0_s0", "subset_2_s0"], subset_rows=[0, 2],
        state_path=tmp_path / "group.pt",
    )  # fmt: skip
    with killed_at_step(monkeypatch, BatchedDiffusionTrainer, 3), pytest.raises(KeyboardInterrupt):
        train_group_and_save(**group, **common)
    assert (tmp_path / "group.pt").exists(), "no state was saved before the kill"
    train_group_and_save(**group, **common)
    assert not (tmp_path / "group.pt").exists()
    for j in (0, 2):
        train_and_save(
            out_dir=tmp_path / "single" / f"subset_{j}_s0", model_id=f"subset_{j}_s0",
            subset_row=j, shared_batches=True, state_path=tmp_path / "one.pt", **common,
        )  # fmt: skip
        batched, _, meta = load_model(tmp_path / "group" / f"subset_{j}_s0")
        single, _, single_meta = load_model(tmp_path / "single" / f"subset_{j}_s0")
        for name, value in single.state_dict().items():
            torch.testing.assert_close(batched.state_dict()[name], value, rtol=0, atol=ATOL)
        assert meta["info"]["resumed_from_step"] == 2
        assert meta["info"]["subset_row"] == j and meta["info"]["shared_batches"]
        assert meta["info"]["num_train_images"] == single_meta["info"]["num_train_images"]
        losses = pd.read_csv(tmp_path / "group" / f"subset_{j}_s0" / "loss.csv")
        single_losses = pd.read_csv(tmp_path / "single" / f"subset_{j}_s0" / "loss.csv")
        assert list(losses["step"]) == list(single_losses["step"]) == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(losses["loss"], single_losses["loss"], rtol=1e-4)


def test_group_size_trains_subset_models_in_batched_jobs(run_snakemake, tmp_path):
    """subsets.group_size 3 on the ci config: one retrain_group job per 3 subset rows writes
    each model's folder, and no one-model retrain job is scheduled."""
    out = tmp_path / "results"
    args = ["--configfile", "config/ci.yaml", "--config", f"outdir={out}",
            "subsets={group_size: 3}"]  # fmt: skip
    dry = run_snakemake("-n", "--quiet", "rules", *args)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "retrain_group_s0_r0_2" in dry.stdout and "retrain_group_s0_r3_5" in dry.stdout
    assert " retrain " not in dry.stdout.replace("\n", " ")
    models = [f"{out}/models/subset_{j}_s0/model.safetensors" for j in range(3)]
    proc = run_snakemake("--cores", "1", *args, "--", *models)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from stepattr.core.diffusion import load_model

    infos = [load_model(Path(m).parent)[2]["info"] for m in models]
    assert [i["subset_row"] for i in infos] == [0, 1, 2]
    assert all(i["batched_group"] == ["subset_0_s0", "subset_1_s0", "subset_2_s0"] for i in infos)
    assert (
        infos[0]["steps"] == 20
        and (out / "logs" / "retrain" / "retrain_group_s0_r0_2.log").exists()
    )


def test_subset_group_benchmark_runs_on_an_overlay_config(tmp_path):
    """benchmark_training.py --subset-groups reads an overlay through the default config
    and records one row per G with its speed-up over one model per job."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "scripts/benchmarks/benchmark_training.py", "--config", "config/ci.yaml",
         "--device", "cpu", "--steps", "1", "--warmup", "0", "--subset-groups", "2",
         "--out", str(tmp_path)],
        cwd=repo, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "subset_training.csv")
    assert list(rows["group_size"]) == [1, 2] and rows["speedup_wall"].iloc[0] == 1.0
