"""Rule prepare_data: write {DATA}/train.npz, test.npz and manifest.json (stepattr.datasets)."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

import logging  # noqa: E402

from stepattr.datasets import prepare_dataset  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
prepare_dataset(
    dict(smk.params.dataset),
    train_path=smk.output.train,
    test_path=smk.output.test,
    manifest_path=smk.output.manifest,
)
