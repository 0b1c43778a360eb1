"""Rule score: TRAK scores of one method from every full model's features, averaged."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.trak.jobs import score_method  # noqa: E402

score_method(
    method=smk.wildcards.method,
    models=smk.params.models,
    feature_paths={
        key: smk.input[key] for key in ("train_features", "target_features", "whole_loss_features")
    },
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    lambda_path=smk.input.lam,
    outputs=dict(smk.output.items()),
    attribution=dict(smk.params.attribution),
    provenance=dict(smk.params.provenance),
)
