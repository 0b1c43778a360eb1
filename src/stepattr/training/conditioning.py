"""Caption conditioning of the text-to-image family's training: which caption each example
gets at each step, and caption dropout for classifier-free guidance.

At step s the example i of the batch gets one of its captions, drawn uniformly, and with
probability ``dropout`` the empty caption instead (the unconditional branch that
classifier-free guidance subtracts). The draws come from their own stream keyed by
(seed, step) and are made for the whole batch before any example is dropped, so a subset or
removal model on shared batches gives each kept example the very caption (and dropout) that the
full model gave it: common random numbers, as for timesteps and noises.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from stepattr.core.images import load_captions
from stepattr.core.seeds import numpy_rng

CAPTION_DRAW = 10  # seed stream (after stepattr.core.seeds' tags)
FEATURE_CAPTION_DRAW = 14  # seed stream of the captions of TRAK's per-example draws


class CaptionConditioning:
    """Text states per training example and step (see the module docstring).

    ``states``: (U, L, D) encoder states of U distinct texts; ``captions``: for each training
    example the rows of its captions in ``states``; ``empty``: the row of the empty caption.
    """

    def __init__(
        self,
        states: torch.Tensor,
        captions: Sequence[Sequence[int]],
        empty: int,
        dropout: float,
        seed: int,
    ) -> None:
        if not 0 <= dropout < 1:
            raise ValueError(f"caption dropout = {dropout} must lie in [0, 1)")
        if any(len(rows) == 0 for rows in captions):
            raise ValueError("every training example needs at least one caption")
        self.states, self.empty = states, int(empty)
        self.dropout, self.seed = float(dropout), int(seed)
        width = max(len(rows) for rows in captions)
        self.table = np.full((len(captions), width), -1, dtype=np.int64)
        for i, rows in enumerate(captions):
            self.table[i, : len(rows)] = rows
        self.counts = np.array([len(rows) for rows in captions], dtype=np.int64)

    @property
    def cross_attention_dim(self) -> int:
        return int(self.states.shape[-1])

    def rows(self, idx: np.ndarray, step: int) -> np.ndarray:
        """Rows of ``states`` for the examples ``idx`` of batch ``step``."""
        rng = numpy_rng(CAPTION_DRAW, self.seed, step)
        pick = (rng.random(len(idx)) * self.counts[idx]).astype(np.int64)
        rows = self.table[idx, pick]
        return np.where(rng.random(len(idx)) < self.dropout, self.empty, rows)

    def draw_states(self, indices: Sequence[int], num_draws: int, seed: int) -> torch.Tensor:
        """States (B, K, L, D) of K draws per training example: each draw one of the example's
        captions, or with probability ``dropout`` the empty one, as in training, so that the
        features are gradients of the training loss of the example. Seeded by (seed, example),
        never by batch or shard."""
        rows = np.empty((len(indices), num_draws), dtype=np.int64)
        for b, index in enumerate(indices):
            rng = numpy_rng(FEATURE_CAPTION_DRAW, seed, int(index))
            pick = (rng.random(num_draws) * self.counts[index]).astype(np.int64)
            drop = rng.random(num_draws) < self.dropout
            rows[b] = np.where(drop, self.empty, self.table[index, pick])
        return self.states[torch.from_numpy(rows)]

    def batch(self, idx: np.ndarray, step: int) -> torch.Tensor:
        """States (B, L, D) for the examples ``idx`` of batch ``step``."""
        return self.states[torch.from_numpy(self.rows(idx, step))]


def caption_conditioning(
    train_path: str | os.PathLike,
    states_path: str | os.PathLike,
    dropout: float,
    seed: int,
) -> CaptionConditioning:
    """The conditioning of a training split: each example's captions (the split's
    ``captions``) looked up in the text-state cache (:func:`stepattr.text.encoder.
    write_text_states`, whose empty text is the dropout's unconditional row)."""
    from stepattr.text.encoder import EMPTY, load_text_states

    by_text = load_text_states(states_path)
    texts = list(by_text)
    row_of = {text: i for i, text in enumerate(texts)}
    captions = load_captions(train_path)
    missing = sorted({c for caps in captions for c in caps if c not in row_of})
    if missing or EMPTY not in row_of:
        what = f"caption {missing[0]!r}" if missing else "the empty text"
        raise ValueError(f"{states_path}: no states for {what} of {train_path}; rerun encode_text")
    states = torch.from_numpy(np.stack([by_text[t] for t in texts]))
    rows = [[row_of[c] for c in caps] for caps in captions]
    return CaptionConditioning(states, rows, row_of[EMPTY], dropout, seed)
