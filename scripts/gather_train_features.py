"""Rule gather_train_features: one model's train-feature shards -> train.npy (+ train.json)."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

from stepattr.trak.workflow import gather_train  # noqa: E402

gather_train(smk.input.features, smk.output.features, smk.input.train)
print(f"gathered {len(smk.input.features)} shards into {smk.output.features}")
