"""Rule score: TRAK scores of one method from every full model's features, averaged."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.trak.jobs import score_method  # noqa: E402

score_method(
    method=smk.wildcards.method,
    models=smk.params.models,
    train_paths=smk.input.train_features,
    target_paths=smk.input.target_features,
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    lambda_path=smk.input.lam,
    outputs={"scores": smk.output.scores, "index": smk.output.index, "meta": smk.output.meta},
    attribution=dict(smk.params.attribution),
    provenance=dict(smk.params.provenance),
)
