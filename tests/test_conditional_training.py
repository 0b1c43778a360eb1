"""Text-conditioned latent training (the text-to-image family) with the pixel models' trainer:
caption draws and dropout, determinism, resume, shared batches, save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import killed_at_step

from stepattr.core.diffusion import (
    Schedule,
    build_unet,
    eps_model,
    load_model,
    save_model,
    unet_kwargs,
)
from stepattr.training.conditioning import CaptionConditioning
from stepattr.training.recipe import DiffusionTrainer, TrainSettings
from stepattr.training.train import train_diffusion

CPU = torch.device("cpu")
MODEL = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [0],
         "norm_num_groups": 4, "attention_head_dim": 4}  # fmt: skip
TRAIN = {"steps": 4, "batch_size": 6, "lr": 0.002, "warmup_steps": 1, "weight_decay": 0.0,
         "ema_decay": 0.9, "grad_clip": 1.0, "checkpoint_every": 2, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def latents() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((20, 4, 4, 4)).astype(np.float32)


def conditioning(dropout: float = 0.2, seed: int = 3, states=None) -> CaptionConditioning:
    """5 texts (row 4 = the empty caption) of 3 tokens x 8 dims; example i has captions
    {i % 4} and, for even i, also {(i + 1) % 4}."""
    if states is None:
        states = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(1))
    captions = [[i % 4] + ([(i + 1) % 4] if i % 2 == 0 else []) for i in range(20)]
    return CaptionConditioning(states, captions, empty=4, dropout=dropout, seed=seed)


def run(latents, steps=4, state=None, keep=None, cond=None, **train):
    return train_diffusion(
        latents, MODEL, TrainSettings.from_config({**TRAIN, **train}), Schedule(),
        seed=0, steps=steps, device=CPU,
        keep=keep, state_path=state, conditioning=cond or conditioning(),
    )  # fmt: skip


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_caption_draws_are_seeded_own_captions_with_dropout() -> None:
    cond = conditioning(dropout=0.25)
    idx = np.arange(20).repeat(200)
    rows = cond.rows(idx, step=7)
    np.testing.assert_array_equal(rows, cond.rows(idx, step=7))
    assert not np.array_equal(rows, cond.rows(idx, step=8))
    dropped = rows == 4
    assert abs(dropped.mean() - 0.25) < 0.02
    for i, r in zip(idx[~dropped], rows[~dropped], strict=True):
        assert r in ([i % 4] + ([(i + 1) % 4] if i % 2 == 0 else []))
    even = idx[~dropped] % 2 == 0  # both captions of a two-caption example are drawn
    assert set(rows[~dropped][even & (idx[~dropped] == 0)]) == {0, 1}
    with pytest.raises(ValueError, match=r"caption dropout = 1\.0"):
        conditioning(dropout=1.0)


def test_conditional_training_is_deterministic_and_uses_the_captions(latents) -> None:
    first, second = run(latents), run(latents)
    assert type(first.trainer.unet).__name__ == "UNet2DConditionModel"
    assert same(first.trainer.unet, second.trainer.unet)
    other_states = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(9))
    changed = run(latents, cond=conditioning(states=other_states))
    assert not same(first.trainer.unet, changed.trainer.unet)


def test_conditional_resume_equals_an_uninterrupted_run(latents, tmp_path, monkeypatch) -> None:
    whole = run(latents, steps=6)
    with killed_at_step(monkeypatch, DiffusionTrainer, 3), pytest.raises(KeyboardInterrupt):
        run(latents, steps=6, state=tmp_path / "s.pt")
    resumed = run(latents, steps=6, state=tmp_path / "s.pt")
    assert resumed.resumed_from == 2
    assert same(whole.trainer.unet, resumed.trainer.unet) and same(
        whole.trainer.ema, resumed.trainer.ema
    )


def test_shared_batches_give_kept_examples_the_full_models_captions(latents) -> None:
    keep = np.arange(20) % 3 != 0
    model = run(latents, keep=keep).trainer.final_model()
    scrambled = latents.copy()
    scrambled[~keep] = -scrambled[~keep]  # excluded examples do not matter
    assert same(model, run(scrambled, keep=keep).trainer.final_model())
    everything = run(latents, keep=np.ones(20, dtype=bool)).trainer.final_model()
    assert same(everything, run(latents).trainer.final_model())  # nothing excluded = full model


def test_conditional_model_saves_and_loads_with_its_class(latents, tmp_path) -> None:
    torch.manual_seed(0)
    unet = build_unet(MODEL, 4, 4, cross_attention_dim=8).eval()
    save_model(tmp_path, unet, unet_kwargs(MODEL, 4, 4, 8), Schedule())
    loaded, _, meta = load_model(tmp_path)
    assert meta["unet_class"] == "UNet2DConditionModel"
    x, t = torch.from_numpy(latents[:3]), torch.tensor([5, 500, 999])
    states = conditioning().states[[0, 4, 2]]
    torch.testing.assert_close(eps_model(loaded)(x, t, states), eps_model(unet)(x, t, states))
