"""Rule prepare_data: write {DATA}/train.npz, test.npz and manifest.json (stepattr.datasets)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.datasets.prepare import prepare_dataset  # noqa: E402

prepare_dataset(
    dict(smk.params.dataset),
    train_path=smk.output.train,
    test_path=smk.output.test,
    manifest_path=smk.output.manifest,
)
