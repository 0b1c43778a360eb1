"""Rule gather_train_features: one model's train-feature shards -> train.npy (+ train.json)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.trak.jobs import gather_train  # noqa: E402

gather_train(smk.input.features, smk.output.features, smk.input.train)
print(f"gathered {len(smk.input.features)} shards into {smk.output.features}")
