"""Independent seeds derived from a config seed and integer keys.

Every random stream of training, subsetting and sampling is keyed by what it is for (a model,
a training step, an epoch, a subset row), not by how much randomness was consumed before it.
So a resumed or re-sharded job draws exactly the numbers an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

# Stream tags: distinct first keys so that two uses of the same config seed never collide.
MODEL_INIT = 0
DATA_ORDER = 1
TRAIN_STEP = 2
SUBSET_MASK = 3
SUBSET_MODEL = 4
GENERATED_TARGETS = 5
VALIDATION_PICK = 6
VALIDATION_NOISE = 7
PREVIEW = 8
RANDOM_REMOVAL = 9  # counterfactual: the random-removal control
FINE_TUNE_EFFECT = 10  # stable_diffusion: base and fine-tuned samples from the same noises
PIPELINE_TRANSITIONS = 15  # stable_diffusion: the pretrained pipeline's own trajectories


def derive_seed(*keys: int, bits: int = 63) -> int:
    """A seed from non-negative integer keys (numpy's SeedSequence hashing): 63 bits for numpy
    and Python, or ``bits=64`` where a torch generator takes all of them."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & (2**bits - 1)


def chained_seed(*keys: int) -> int:
    """A 63-bit seed chained through the keys by a polynomial hash: the derivation of the
    output functions' draws (:mod:`stepattr.core.output_functions`). Kept beside
    :func:`derive_seed` rather than replaced by it, because every TRAK feature, score and
    table depends on these draws."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return seed


def numpy_rng(*keys: int) -> np.random.Generator:
    """A numpy generator for the stream named by ``keys``."""
    return np.random.default_rng(derive_seed(*keys))
