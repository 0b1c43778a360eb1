"""The autoencoder's check: reconstructions beside originals, and what the classifier sees.

On the test split: the reconstruction MSE and PSNR, and the workflow classifier's accuracy on
the originals and on their reconstructions (a latent space that loses the digit's identity
would show here before any diffusion model is trained on it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from stepattr.core.images import load_split, save_image_grid, to_model_space, to_uint8
from stepattr.core.io import save_csv, save_text
from stepattr.detectors.classifier import predict_proba
from stepattr.latents.autoencoder import reconstruct

TABLE_COLUMNS = ["images", "mse", "psnr_db", "accuracy_original", "accuracy_reconstruction"]


def autoencoder_report(
    vae: Any,
    classifier: Any,
    test_path: str | os.PathLike,
    figure_path: str | os.PathLike,
    table_path: str | os.PathLike,
    markdown_path: str | os.PathLike,
    provenance: str,
    shown: int = 32,
) -> pd.DataFrame:
    """Write the reconstruction figure (``shown`` test images spread over the split: originals
    row over reconstructions row) and the table."""
    images, labels, _ = load_split(test_path)
    recon = reconstruct(vae, images, 256)
    mse = float(np.mean((recon - to_model_space(images).numpy()) ** 2))
    accuracy = [
        float((predict_proba(classifier, x).argmax(1) == labels).mean())
        for x in (to_model_space(images), recon)
    ]
    table = pd.DataFrame(
        [[len(images), mse, 10 * np.log10(4.0 / mse), *accuracy]], columns=TABLE_COLUMNS
    )
    n = min(shown, len(images))
    picked = np.linspace(0, len(images) - 1, n).round().astype(int)  # splits are class-sorted
    pairs = np.concatenate([images[picked], to_uint8(recon[picked])])
    save_image_grid(figure_path, pairs, ncol=n, scale=4)
    save_csv(table_path, table)
    save_text(
        markdown_path,
        f"Autoencoder on the test split ({provenance}): originals (top row of the figure) and "
        "reconstructions (bottom row); MSE per pixel in [-1, 1].\n\n"
        + table.to_markdown(index=False, floatfmt=".4f")
        + "\n",
    )
    return table
