"""Stage latents: the text-to-image family's autoencoder, trained and pretrained, and its cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stepattr.core.images import load_split, to_model_space
from stepattr.core.io import atomic_dir, load_json
from stepattr.datasets.prepare import prepare_dataset
from stepattr.latents.autoencoder import (
    AutoencoderSettings,
    build_autoencoder,
    encode_means,
    load_autoencoder,
    load_latents,
    reconstruct,
    train_autoencoder,
    write_latents,
)

AE_CFG = AutoencoderSettings.from_config({
    "pretrained": None, "block_out_channels": [8, 16], "latent_channels": 4,
    "layers_per_block": 1, "norm_num_groups": 4, "epochs": 2, "batch_size": 16, "lr": 0.003,
    "kl_weight": 1e-6, "seed": 0,
})  # fmt: skip


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("digits")
    cfg = {"name": "d", "source": "mnist5k", "image_size": 8, "split_seed": 0,
           "test_fraction": 0.1, "max_train": 96}  # fmt: skip
    prepare_dataset(cfg, out / "train.npz", out / "test.npz", out / "manifest.json")
    return out / "train.npz", out / "test.npz"


def test_trained_autoencoder_saves_a_loadable_folder_and_its_metrics(
    tmp_path: Path, digits, one_thread
) -> None:
    train, test = digits
    metrics = train_autoencoder(train, test, AE_CFG, tmp_path / "ae" / "model")
    assert {p.name for p in (tmp_path / "ae" / "model").iterdir()} == {
        "config.json", "diffusion_pytorch_model.safetensors",
    }  # fmt: skip
    assert not [p for p in (tmp_path / "ae").iterdir() if p.name.startswith(".")]  # no leftovers
    vae = load_autoencoder(tmp_path / "ae" / "model")
    assert not any(p.requires_grad for p in vae.parameters())
    test_images, _, _ = load_split(test)
    mse = float(
        np.mean((reconstruct(vae, test_images, 7) - to_model_space(test_images).numpy()) ** 2)
    )
    assert metrics["test_mse"] == pytest.approx(mse, rel=1e-5)  # the recorded error is recomputable
    assert metrics["latent_shape"] == [4, 4, 4]  # two blocks: 8x8 -> 4x4
    assert load_json(tmp_path / "ae" / "metrics.json")["test_mse"] == metrics["test_mse"]
    # seeded: a second run gives the same weights
    again = train_autoencoder(train, test, AE_CFG, tmp_path / "ae2" / "model")
    assert again["test_mse"] == metrics["test_mse"]


def test_latent_cache_is_scaled_to_unit_std_and_matches_encoding(tmp_path: Path, digits) -> None:
    train, test = digits
    vae = build_autoencoder(AE_CFG, 1, 8).eval()
    factor = write_latents(vae, train, test, tmp_path / "latents.npz", "data", batch_size=10)
    z_train, z_test, stored = load_latents(tmp_path / "latents.npz")
    assert stored == factor and z_train.std() == pytest.approx(1.0, rel=1e-4)
    images, _, _ = load_split(test)
    expected = encode_means(vae, images, len(images)) * factor
    np.testing.assert_allclose(z_test, expected, rtol=1e-5, atol=1e-6)  # batching changes nothing
    assert z_train.shape == (96, 4, 4, 4)


def test_pretrained_folder_plumbing(tmp_path: Path, digits) -> None:
    """Plumbing test: a tiny random AutoencoderKL saved like a downloaded one (diffusers folder,
    its own scaling_factor) is loaded from the folder, and its scaling factor is used."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, block_out_channels=(8,), norm_num_groups=4,
        latent_channels=4, scaling_factor=0.25,
    )  # fmt: skip
    vae.save_pretrained(tmp_path / "pretrained", safe_serialization=True)
    loaded = load_autoencoder(tmp_path / "pretrained")
    train, test = digits
    factor = write_latents(loaded, train, test, tmp_path / "z.npz", "config", batch_size=32)
    assert factor == 0.25
    images, _, _ = load_split(test)
    np.testing.assert_allclose(
        load_latents(tmp_path / "z.npz")[1], encode_means(vae.eval(), images, 64) * 0.25, atol=1e-6
    )


def test_bad_autoencoder_input_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"autoencoder\.pretrained = '.*empty': no config\.json"):
        load_autoencoder(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"divisible by autoencoder\.norm_num_groups = 3"):
        build_autoencoder(replace(AE_CFG, norm_num_groups=3), 1, 8)
    np.savez(tmp_path / "x.npz", train=np.zeros(1))
    with pytest.raises(ValueError, match=r"x\.npz: not a latent cache"):
        load_latents(tmp_path / "x.npz")


def test_atomic_dir_moves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed")
    assert list((tmp_path / "model").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the temporary folder is gone


def test_report_recomputes_error_and_classifier_accuracy(tmp_path: Path, digits) -> None:
    from stepattr.detectors.classifier import ConvClassifier, predict_proba
    from stepattr.latents.report import autoencoder_report

    _, test = digits
    torch.manual_seed(0)
    classifier = ConvClassifier(1, 8, 10, channels=[4], embed_dim=8).eval()
    vae = build_autoencoder(AE_CFG, 1, 8).eval()
    table = autoencoder_report(
        vae, classifier, test, tmp_path / "f.png", tmp_path / "t.csv", tmp_path / "t.md", "cfg"
    )
    images, labels, _ = load_split(test)
    recon = reconstruct(vae, images, 3)
    row = table.iloc[0]
    assert row["mse"] == pytest.approx(
        float(np.mean((recon - to_model_space(images).numpy()) ** 2))
    )
    expected = float((predict_proba(classifier, recon).argmax(1) == labels).mean())
    assert row["accuracy_reconstruction"] == pytest.approx(expected)
    assert (tmp_path / "f.png").is_file() and "(cfg)" in (tmp_path / "t.md").read_text()
