"""The rule entry points of stage datasets (scripts/datasets/): each reads its rule's
snakemake object once and calls the stage's functions."""

from __future__ import annotations

from typing import Any

from stepattr.datasets.prepare import prepare_dataset


def run_prepare_data(smk: Any) -> None:
    """Rule prepare_data: write {DATA}/train.npz, test.npz and manifest.json (stepattr.datasets)."""
    prepare_dataset(
        dict(smk.params.dataset),
        train_path=smk.output.train,
        test_path=smk.output.test,
        manifest_path=smk.output.manifest,
    )
