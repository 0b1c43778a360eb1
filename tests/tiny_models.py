"""Model configs shared by the unit tests: small enough for a test to train or sample in seconds;
and a killed training job, for the resume tests."""

import contextlib
from collections.abc import Iterator

TINY_UNET = {
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "attention_levels": [],
    "norm_num_groups": 4,
    "dropout": 0.0,
}


@contextlib.contextmanager
def killed_at_step(monkeypatch, trainer_class: type, step: int) -> Iterator[None]:
    """Inside the block, ``trainer_class.train_step`` raises KeyboardInterrupt (a killed job)
    when asked for step ``step``; afterwards the real step is back."""
    real_step = trainer_class.train_step

    def killed(self):
        if self.step == step:
            raise KeyboardInterrupt("job killed")
        return real_step(self)

    monkeypatch.setattr(trainer_class, "train_step", killed)
    try:
        yield
    finally:
        monkeypatch.setattr(trainer_class, "train_step", real_step)
