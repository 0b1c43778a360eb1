"""The Stable Diffusion family: LoRA models on a pipeline's UNet (stepattr.core.lora), their
training and features, the config taken from a pipeline folder, and what a fine-tune changes.

Plumbing tests: the pipeline is built here from tiny parts with random weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_pipeline

from stepattr.core.diffusion import Schedule, build_unet, eps_model, load_model, save_model
from stepattr.core.lora import LORA_KEY, lora_state_dict
from stepattr.core.output_functions import output_value, train_draws
from stepattr.stable_diffusion.effect import label_distribution_table, pipeline_samples
from stepattr.stable_diffusion.export import export_lora, load_pipeline
from stepattr.training.conditioning import CaptionConditioning
from stepattr.training.recipe import DiffusionTrainer, TrainSettings
from stepattr.trak.gradients import parameter_names, per_example_gradients, prepare_model
from stepattr.workflow.configs import ConfigError, load_config, model_spec, resolve_pipeline

LORA = {"rank": 2, "alpha": 4, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
SHAPE = (4, 4, 4)
TRAIN = TrainSettings.from_config(
    {"steps": 5, "seed": 0, "batch_size": 4, "lr": 0.01, "weight_decay": 0.0, "ema_decay": 0.9,
     "grad_clip": 1.0, "warmup_steps": 0, "compile": False}
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline(tmp_path_factory.mktemp("sd"))


def spec(pipeline_dir: Path, **lora) -> dict:
    return {"base": str(pipeline_dir / "unet"), "lora": LORA | lora}


def perturbed(unet: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Random adapter weights (B starts at zero, so an untrained LoRA is its base)."""
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if LORA_KEY in name:
                param.add_(scale * torch.randn(param.shape, generator=gen))
    return unet


def test_lora_model_starts_as_its_base_and_saves_only_its_adapters(pipeline_dir, tmp_path):
    torch.manual_seed(0)
    model = build_unet(spec(pipeline_dir), 4, 4, 16)
    base = load_pipeline(pipeline_dir).unet
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(LORA_KEY in n for n in trainable)
    assert set(trainable) == set(lora_state_dict(model))
    x, t, states = torch.randn(2, *SHAPE), torch.tensor([5, 900]), torch.randn(2, 10, 16)
    with torch.no_grad():
        want = base(x, t, encoder_hidden_states=states).sample
        torch.testing.assert_close(model(x, t, encoder_hidden_states=states).sample, want)
    perturbed(model)
    save_model(tmp_path / "m", model, spec(pipeline_dir), Schedule(beta_end=0.015))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (
        meta["lora"]["base"] == str(pipeline_dir / "unet")
        and len(meta["lora"]["base_sha256"]) == 64
    )
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "m" / "model.safetensors")) == set(trainable)
    loaded, schedule, _ = load_model(tmp_path / "m")
    assert schedule.beta_end == 0.015
    with torch.no_grad():
        got = loaded(x, t, encoder_hidden_states=states).sample
        torch.testing.assert_close(got, model.eval()(x, t, encoder_hidden_states=states).sample)
        assert not torch.allclose(got, want)  # the adapters are loaded, not just the base
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == trainable


def test_a_lora_model_refuses_a_base_that_changed_since(pipeline_dir, tmp_path):
    base = tmp_path / "pipeline" / "unet"
    shutil.copytree(pipeline_dir / "unet", base)
    torch.manual_seed(0)
    lora_spec = {"base": str(base), "lora": LORA}
    save_model(tmp_path / "m", build_unet(lora_spec, 4, 4, 16), lora_spec, Schedule())
    load_model(tmp_path / "m")
    unet = load_pipeline(pipeline_dir).unet
    with torch.no_grad():
        next(unet.parameters()).add_(1.0)
    unet.save_pretrained(base, safe_serialization=True)
    with pytest.raises(ValueError, match=r"m/config.json: its base UNet .* is not the one"):
        load_model(tmp_path / "m")
    shutil.rmtree(base)
    with pytest.raises(ValueError, match=r"m/config.json: its base UNet .* is missing"):
        load_model(tmp_path / "m")


def test_bad_lora_settings_are_named(pipeline_dir):
    with pytest.raises(ValueError, match=r"pipeline.lora.rank = 0"):
        build_unet(spec(pipeline_dir, rank=0), 4, 4, 16)
    with pytest.raises(ValueError, match=r"pipeline.lora.target_modules = \['no_such_layer'\]"):
        build_unet(spec(pipeline_dir, target_modules=["no_such_layer"]), 4, 4, 16)
    with pytest.raises(ValueError, match=r"pipeline.path: .* is not a UNet folder"):
        build_unet({"base": str(pipeline_dir / "vae"), "lora": LORA}, 4, 4, 16)


def test_lora_training_moves_only_the_adapters(pipeline_dir, tmp_path):
    states = torch.randn(4, 10, 16, generator=torch.Generator().manual_seed(1))
    cond = CaptionConditioning(states, [[i % 3] for i in range(8)], empty=3, dropout=0.2, seed=0)
    latents = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(2))
    trainer = DiffusionTrainer(
        latents, spec(pipeline_dir), TRAIN, Schedule(beta_end=0.015), 0, torch.device("cpu"),
        conditioning=cond,
    )  # fmt: skip
    before = {k: v.clone() for k, v in trainer.unet.state_dict().items()}
    for _ in range(5):
        trainer.train_step()
    after = trainer.unet.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(LORA_KEY in k for k in moved)
    assert any("lora_B" in k for k in moved)  # the update left zero
    ema = trainer.final_model().state_dict()
    assert all(torch.equal(ema[k], after[k]) for k in after if LORA_KEY not in k)
    assert any(not torch.equal(ema[k], after[k]) for k in moved)  # the EMA lags the weights


@pytest.mark.parametrize("kind", ["loss", "square_norm"])
def test_lora_features_are_gradients_wrt_the_adapters_equal_to_a_loop(pipeline_dir, kind):
    torch.manual_seed(0)
    model = prepare_model(perturbed(build_unet(spec(pipeline_dir), 4, 4, 16)).double())
    names = parameter_names(model)
    assert names and all(LORA_KEY in n for n in names)
    x0 = torch.randn(3, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ts, ns = train_draws(0, [4, 9, 2], 2, SHAPE, 1000)
    states = torch.randn(3, 2, 10, 16, dtype=torch.float64)
    alphas = Schedule(beta_end=0.015).alphas_cumprod
    got = per_example_gradients(model, kind, alphas, x0, ts, ns.double(), states=states)
    params = dict(model.named_parameters())
    for i in range(3):
        model.zero_grad()
        value = output_value(
            eps_model(model), kind, x0[i : i + 1], ts[i : i + 1], ns[i : i + 1].double(), alphas,
            states=states[i : i + 1],
        )  # fmt: skip
        value.sum().backward()
        want = torch.cat([params[n].grad.reshape(-1) for n in names])
        torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-13)
    assert got.shape[1] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_scaled_linear_betas_are_diffusers():
    from diffusers import DDPMScheduler

    ours = Schedule(1000, 0.00085, 0.012, "scaled_linear")
    theirs = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    torch.testing.assert_close(ours.betas.float(), theirs.betas, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="diffusion.beta_schedule = 'cosine'"):
        Schedule(beta_schedule="cosine")


def sd_config(repo: Path, path: Path | str) -> dict:
    """config/digits_sd.yaml on ``path``, its detector the CLIP that :func:`tiny_pipeline` built
    beside the pipeline (the shipped one is the text-to-image run's output, absent in a clone)."""
    cfg = load_config([repo / "config" / "digits_sd.yaml"])
    cfg["pipeline"]["path"] = str(path)
    cfg["pipeline"]["transitions"]["clip"] = str(Path(path).parent / "parts" / "text" / "clip")
    return cfg


def test_config_takes_parts_and_schedule_from_the_pipeline(repo, pipeline_dir):
    cfg = sd_config(repo, pipeline_dir)
    resolve_pipeline(cfg)
    assert cfg["autoencoder"]["pretrained"] == str(pipeline_dir / "vae")
    assert cfg["autoencoder"]["block_out_channels"] == [8, 16]
    assert cfg["text_encoder"]["pretrained"] == str(pipeline_dir)
    assert (cfg["text_encoder"]["width"], cfg["text_encoder"]["context"]) == (16, 10)
    assert cfg["diffusion"]["beta_end"] == 0.015
    assert model_spec(cfg) == {"base": str(pipeline_dir / "unet"), "lora": cfg["pipeline"]["lora"]}
    pixel = load_config([])
    resolve_pipeline(pixel)
    assert pixel == load_config([]) and model_spec(pixel) == pixel["model"]


def test_bad_pipeline_folders_are_named(repo, pipeline_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline.path = '.*nowhere': no such folder"):
        resolve_pipeline(sd_config(repo, tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"no such folder, and no hub id .* in the local Hugging"):
        resolve_pipeline(sd_config(repo, "no-such-owner/no-such-model"))
    broken = shutil.copytree(pipeline_dir, tmp_path / "broken")
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(
        ConfigError, match=r"not a StableDiffusionPipeline folder \(no text_encoder/\)"
    ):
        resolve_pipeline(sd_config(repo, broken))
    v_pred = shutil.copytree(pipeline_dir, tmp_path / "v")
    file = v_pred / "scheduler" / "scheduler_config.json"
    file.write_text(json.dumps(json.loads(file.read_text()) | {"prediction_type": "v_prediction"}))
    with pytest.raises(ConfigError, match=r"predicts 'v_prediction'"):
        resolve_pipeline(sd_config(repo, v_pred))
    cfg = sd_config(repo, pipeline_dir)
    cfg["autoencoder"]["pretrained"] = "elsewhere/vae"
    with pytest.raises(ConfigError, match=r"autoencoder.pretrained = 'elsewhere/vae'"):
        resolve_pipeline(cfg)


def test_pipeline_samples_with_a_zero_lora_are_the_bases(pipeline_dir):
    pipeline = load_pipeline(pipeline_dir)
    base = pipeline.unet
    torch.manual_seed(0)
    fresh = build_unet(spec(pipeline_dir), 4, 4, 16).eval()
    kwargs = {"prompt": "a handwritten digit 3", "n": 3, "guidance": 2.0, "steps": 3, "seed": 1}
    want = pipeline_samples(pipeline, base, **kwargs)
    assert want.shape == (3, 1, 8, 8) and want.min() >= -1 and want.max() <= 1
    torch.testing.assert_close(pipeline_samples(pipeline, fresh, **kwargs, batch_size=2), want)
    assert not torch.allclose(pipeline_samples(pipeline, perturbed(fresh, 1.0), **kwargs), want)


def test_label_distribution_table_counts_fractions_and_distance():
    table = label_distribution_table(
        {"base": np.array([0, 1, 2, 2]), "fine_tuned": np.array([2, 2, 2, 2])},
        np.array([0, 1, 2, 2, 2, 2]),
        ["a", "b", "c"],
    )
    assert list(table["class"]) == ["a", "b", "c", "(TV distance to train)"]
    np.testing.assert_allclose(table["train_fraction"][:3], [1 / 6, 1 / 6, 2 / 3])
    np.testing.assert_allclose(table["fine_tuned_fraction"], [0, 0, 1, 1 / 3])
    np.testing.assert_allclose(table["base_fraction"], [0.25, 0.25, 0.5, 1 / 6])
    assert (table["fine_tuned_ci_low"][:3] <= table["fine_tuned_fraction"][:3]).all()
    assert table["base_count"].iloc[-1] == 4


@pytest.mark.parametrize("alpha", [2, 8])  # alpha = rank, and alpha != rank (scale 4)
def test_exported_lora_loads_in_diffusers_as_the_model(pipeline_dir, tmp_path, alpha):
    """Attention and convolutions, as config/digits_sd.yaml adapts them; conv_in's keys sort
    first (as the digits UNet's first ResNet's do: no attention at its level)."""
    convs = ["conv_in", "conv1", "conv2"]
    lora = {"alpha": alpha, "target_modules": [*LORA["target_modules"], *convs]}
    torch.manual_seed(0)
    model = perturbed(build_unet(spec(pipeline_dir, **lora), 4, 4, 16))
    save_model(tmp_path / "m", model, spec(pipeline_dir, **lora), Schedule())
    assert export_lora(tmp_path / "m", tmp_path / "lora") < 1e-5
    pipeline = load_pipeline(pipeline_dir)
    pipeline.load_lora_weights(str(tmp_path / "lora"))
    x, t, states = torch.randn(2, *SHAPE), torch.tensor([5, 900]), torch.randn(2, 10, 16)
    with torch.no_grad():
        want = model.eval()(x, t, encoder_hidden_states=states).sample
        torch.testing.assert_close(pipeline.unet(x, t, encoder_hidden_states=states).sample, want)
    with pytest.raises(ValueError, match="not a LoRA model"):  # the tiny pipeline's full UNet
        export_lora(pipeline_dir.parent / "parts" / "unet", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
