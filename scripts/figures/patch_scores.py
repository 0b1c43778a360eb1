"""Rule patch_scores: TRAK scores of the patch features with the method's lambda."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.figures.jobs import patch_scores_job  # noqa: E402

patch_scores_job(
    method=smk.params.method,
    models=smk.params.models,
    train_paths=smk.input.train_features,
    patch_paths=smk.input.patch_features,
    lambda_path=smk.input.lam,
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    figures=dict(smk.params.figures),
    outputs={"scores": smk.output.scores, "index": smk.output.index, "meta": smk.output.meta},
    provenance=dict(smk.params.provenance),
)
