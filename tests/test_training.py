"""DDPM training: determinism, resume, EMA, subset restriction, config and checkpoint errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import killed_at_step

from stepattr.core.diffusion import Schedule, load_model, save_model, unet_kwargs
from stepattr.core.io import save_json, save_npz
from stepattr.core.seeds import derive_seed
from stepattr.training.jobs import train_and_save
from stepattr.training.recipe import BatchOrder, DiffusionTrainer, TrainSettings, ema_decay_at
from stepattr.training.subsets import subset_masks, subset_model_seed, subset_size, subset_table
from stepattr.training.train import train_diffusion
from stepattr.workflow.checks import ConfigError, check_config
from stepattr.workflow.configs import load_config

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ci_config() -> dict:
    return load_config([REPO / "config" / "ci.yaml"])


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """40 8x8 'digits': bright squares at random places (structure the UNet can learn)."""
    rng = np.random.default_rng(0)
    out = np.zeros((40, 1, 8, 8), dtype=np.uint8)
    for i, (r, c) in enumerate(rng.integers(0, 5, (40, 2))):
        out[i, 0, r : r + 3, c : c + 3] = 255
    return out


def train_cfg(cfg: dict, **overrides) -> TrainSettings:
    return TrainSettings.from_config({**cfg["train"], "batch_size": 8, **overrides})


def run(cfg: dict, images: np.ndarray, steps: int = 4, seed: int = 0, state=None, **overrides):
    return train_diffusion(
        images, cfg["model"], train_cfg(cfg, **overrides), Schedule(),
        seed=seed, steps=steps, device=CPU, state_path=state,
    )  # fmt: skip


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_same_seed_gives_bit_identical_weights(ci_config, images):
    first, second = run(ci_config, images), run(ci_config, images)
    assert_same_weights(first.trainer.unet, second.trainer.unet)
    assert_same_weights(first.trainer.final_model(), second.trainer.final_model())
    pd.testing.assert_frame_equal(
        first.losses.drop(columns="img_per_s"), second.losses.drop(columns="img_per_s")
    )
    other = run(ci_config, images, seed=1)
    assert not torch.equal(other.trainer.unet.conv_in.weight, first.trainer.unet.conv_in.weight), (
        "a different seed must give different weights"
    )


def test_resume_in_the_middle_equals_an_uninterrupted_run(ci_config, images, tmp_path, monkeypatch):
    state = tmp_path / "state" / "full_0.pt"
    whole = run(ci_config, images, steps=6, checkpoint_every=2)

    with killed_at_step(monkeypatch, DiffusionTrainer, 3), pytest.raises(KeyboardInterrupt):
        run(ci_config, images, steps=6, state=state, checkpoint_every=2)
    saved = torch.load(state, weights_only=True)
    assert saved["trainer"]["step"] == 2

    resumed = run(ci_config, images, steps=6, state=state, checkpoint_every=2)
    assert resumed.resumed_from == 2
    assert_same_weights(whole.trainer.unet, resumed.trainer.unet)
    assert_same_weights(whole.trainer.ema, resumed.trainer.ema)
    assert list(resumed.losses["step"]) == list(range(1, 7))
    np.testing.assert_array_equal(resumed.losses["loss"], whole.losses["loss"])


def test_state_of_another_recipe_is_not_resumed(ci_config, images, tmp_path):
    state = tmp_path / "full_0.pt"
    run(ci_config, images, steps=3, state=state, checkpoint_every=2)
    assert state.exists()
    fresh = run(ci_config, images, steps=3, state=state, checkpoint_every=2, lr=1e-3)
    assert fresh.resumed_from == 0


def test_corrupt_training_state_is_an_error_naming_it(ci_config, images, tmp_path):
    state = tmp_path / "full_0.pt"
    state.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="full_0.pt"):
        run(ci_config, images, steps=2, state=state)


def test_saved_model_is_the_ema_of_the_trained_weights(ci_config, images):
    decay = 0.5
    result = run(ci_config, images, steps=5, ema_decay=decay)
    trainer = result.trainer
    assert trainer.final_model() is trainer.ema
    # brute force: replay the same run step by step and average the weights by hand
    replay = DiffusionTrainer(
        torch.as_tensor(images).float() / 127.5 - 1, ci_config["model"],
        train_cfg(ci_config, ema_decay=decay), Schedule(), 0, CPU,
    )  # fmt: skip
    average = {k: v.clone().double() for k, v in replay.unet.state_dict().items()}
    for step in range(5):
        replay.train_step()
        d = ema_decay_at(decay, step)
        for key, value in replay.unet.state_dict().items():
            average[key] = d * average[key] + (1 - d) * value.double()
    for key, value in trainer.ema.state_dict().items():
        torch.testing.assert_close(value.double(), average[key], rtol=1e-5, atol=1e-6)
    assert not torch.equal(trainer.ema.conv_in.weight, trainer.unet.conv_in.weight)
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.9, 10_000) == 0.9


def test_no_ema_saves_the_trained_weights(ci_config, images):
    trainer = run(ci_config, images, steps=2, ema_decay=0.0).trainer
    assert trainer.ema is None and trainer.final_model() is trainer.unet


def test_learning_rate_warms_up_linearly(ci_config, images):
    trainer = run(ci_config, images, steps=1, lr=1e-3, warmup_steps=4).trainer
    assert [trainer.learning_rate(s) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )


def test_batch_order_visits_every_example_once_per_epoch():
    order = BatchOrder(10, 4, seed=3)
    seen = np.concatenate([order.indices(s) for s in range(5)])  # 20 draws = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])
    np.testing.assert_array_equal(BatchOrder(10, 4, seed=3).indices(3), order.indices(3))


def write_split(path: Path, images: np.ndarray) -> None:
    labels = np.arange(len(images), dtype=np.int64) % 2
    save_npz(path, images=images, labels=labels, class_names=np.array(["a", "b"]))


def test_subset_mask_restricts_the_data_used(ci_config, images, tmp_path):
    split, manifest = tmp_path / "train.npz", tmp_path / "manifest.json"
    write_split(split, images)
    save_json(manifest, {"dataset": "toy"})
    masks = subset_masks(len(images), count=2, heldout=1, alpha=0.5, seed=1)
    np.save(tmp_path / "masks.npy", masks)
    cfg = train_cfg(ci_config)
    common = dict(
        train_split=split, manifest=manifest, state_path=tmp_path / "state.pt",
        model_cfg=ci_config["model"], train=cfg, diffusion_cfg=ci_config["diffusion"],
        seed=5, steps=3, device=CPU, masks=tmp_path / "masks.npy", progress=False,
    )  # fmt: skip
    train_and_save(out_dir=tmp_path / "subset_1_s0", model_id="subset_1_s0", subset_row=1, **common)
    train_and_save(out_dir=tmp_path / "full", model_id="full_0", **common)
    subset_model, _, meta = load_model(tmp_path / "subset_1_s0")
    full_model, _, _ = load_model(tmp_path / "full")
    direct = run(ci_config, images[masks[1]], steps=3, seed=5).trainer.final_model()
    assert_same_weights(subset_model, direct)
    assert not torch.equal(subset_model.conv_in.weight, full_model.conv_in.weight)
    assert meta["info"]["subset_row"] == 1 and meta["info"]["num_train_images"] == masks[1].sum()
    assert meta["info"]["seed"] == 5 and len(meta["info"]["dataset_manifest_sha256"]) == 64
    losses = pd.read_csv(tmp_path / "full" / "loss.csv")
    assert list(losses.columns) == ["step", "loss", "loss_smooth", "img_per_s"]
    assert list(losses["step"]) == [1, 2, 3]
    assert not (tmp_path / "state.pt").exists(), "the training state outlived the model"


def shared(cfg: dict, images: np.ndarray, keep: np.ndarray, steps: int = 3):
    result = train_diffusion(
        images, cfg["model"], train_cfg(cfg), Schedule(),
        seed=5, steps=steps, device=CPU, keep=keep,
    )  # fmt: skip
    return result.trainer.final_model()


def test_shared_batches_drop_exactly_the_excluded_examples(ci_config, images):
    """A shared-batch model ignores what it excludes, uses what it keeps, and with nothing
    excluded is the full-data model (same batches, timesteps and noises)."""
    keep = subset_masks(len(images), count=1, heldout=0, alpha=0.5, seed=2)[0]
    model = shared(ci_config, images, keep)
    scrambled = images.copy()
    scrambled[~keep] = 255 - scrambled[~keep]
    assert_same_weights(model, shared(ci_config, scrambled, keep))
    changed = images.copy()
    changed[keep] = 255 - changed[keep]
    assert not torch.equal(model.conv_in.weight, shared(ci_config, changed, keep).conv_in.weight)
    everything = np.ones(len(images), dtype=bool)
    full = run(ci_config, images, steps=3, seed=5).trainer.final_model()
    assert_same_weights(shared(ci_config, images, everything), full)


def test_subset_matrix_rows_have_alpha_n_examples():
    masks = subset_masks(101, count=5, heldout=2, alpha=0.3, seed=4)
    assert masks.dtype == bool and masks.shape == (7, 101)
    assert subset_size(101, 0.3) == 30 and (masks.sum(axis=1) == 30).all()
    assert len({row.tobytes() for row in masks}) == 7
    np.testing.assert_array_equal(masks, subset_masks(101, 5, 2, 0.3, seed=4))
    table = subset_table(masks, count=5, seed=4)
    assert list(table["role"]) == ["scored"] * 5 + ["heldout"] * 2
    # seed indices differ; rows share them (common random numbers across subsets)
    assert subset_model_seed(1, 0) != subset_model_seed(1, 1) != subset_model_seed(2, 0)
    assert derive_seed(1, 2) == derive_seed(1, 2) < 2**63


def test_wrong_mask_file_is_an_error_naming_it(ci_config, images, tmp_path):
    split, manifest = tmp_path / "train.npz", tmp_path / "manifest.json"
    write_split(split, images)
    save_json(manifest, {})
    np.save(tmp_path / "masks.npy", np.ones((2, len(images) + 1), dtype=bool))
    with pytest.raises(ValueError, match="masks.npy"):
        train_and_save(
            train_split=split, manifest=manifest, out_dir=tmp_path / "m",
            state_path=tmp_path / "s.pt",
            model_cfg=ci_config["model"], train=train_cfg(ci_config),
            diffusion_cfg=ci_config["diffusion"], model_id="subset_0_s0", seed=0, steps=1,
            device=CPU, masks=tmp_path / "masks.npy", subset_row=0, progress=False,
        )  # fmt: skip


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("model", "block_out_channels", [8, 10], "model.block_out_channels[1]"),
        ("model", "norm_num_groups", 3, "model.norm_num_groups"),
        ("dataset", "image_size", 7, "dataset.image_size"),
        ("subsets", "alpha", 1.0, "subsets.alpha"),
        ("subsets", "alpha", 0.0, "subsets.alpha"),
        ("sampling", "grid", [900, 1000], "sampling.grid[1]"),
    ],
)
def test_bad_config_fails_before_training_naming_the_key(ci_config, section, key, value, named):
    cfg = copy.deepcopy(ci_config)
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        check_config(cfg)


def save_tiny_model(directory: Path, cfg: dict) -> None:
    torch.manual_seed(0)
    from stepattr.core.diffusion import build_unet

    save_model(
        directory, build_unet(cfg["model"], 8, 1), unet_kwargs(cfg["model"], 8, 1), Schedule()
    )


def test_corrupt_checkpoint_is_an_error_naming_it(ci_config, tmp_path):
    save_tiny_model(tmp_path / "m", ci_config)
    load_model(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(tmp_path / "m")


def test_mismatched_checkpoint_is_an_error_naming_it(ci_config, tmp_path):
    save_tiny_model(tmp_path / "m", ci_config)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["unet"]["block_out_channels"] = [8, 8]
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.safetensors.*do not match"):
        load_model(tmp_path / "m")
    meta["unet_class"] = "UNet3DModel"  # a class the file format does not name
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"m/config.json: not a model config .*UNet3DModel"):
        load_model(tmp_path / "m")


def test_learning_rate_warms_up_then_stays_or_decays_to_zero():
    from stepattr.training.recipe import learning_rate_at

    section = {"steps": 110, "batch_size": 8, "seed": 0, "lr": 0.01, "warmup_steps": 10}
    cfg = TrainSettings.from_config(section)
    assert learning_rate_at(cfg, 0, None) == pytest.approx(0.001)
    assert learning_rate_at(cfg, 9, None) == learning_rate_at(cfg, 500, None) == 0.01
    cosine = TrainSettings.from_config(section | {"lr_schedule": "cosine"})
    assert learning_rate_at(cosine, 4, 110) == learning_rate_at(cfg, 4, 110)  # same warmup
    assert learning_rate_at(cosine, 10, 110) == pytest.approx(0.01)
    assert learning_rate_at(cosine, 60, 110) == pytest.approx(0.005)
    assert learning_rate_at(cosine, 110, 110) == pytest.approx(0.0, abs=1e-12)
    rates = [learning_rate_at(cosine, s, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    with pytest.raises(ValueError, match="total steps"):
        learning_rate_at(cosine, 20, None)


def test_train_settings_are_typed_once_and_refuse_unknown_keys():
    section = {"steps": "30", "batch_size": 8, "seed": 0, "lr": "1e-3", "grad_clip": None}
    settings = TrainSettings.from_config(section)
    assert (settings.steps, settings.lr, settings.grad_clip) == (30, 0.001, None)
    assert settings.ema_decay == 0.999  # config/schema.yaml's default
    assert "threads" not in settings.recipe() and settings.recipe()["lr"] == 0.001
    with pytest.raises(ValueError, match="unknown keys \\['lr_warmup'\\]"):
        TrainSettings.from_config(section | {"lr_warmup": 5})
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainSettings.from_config(section | {"lr_schedule": "linear"})
