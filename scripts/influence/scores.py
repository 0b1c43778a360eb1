"""Rule influence_scores: a method's scores, model-averaged, at the held-out-chosen damping."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.influence.jobs import method_scores  # noqa: E402

heldout = smk.params.heldout_models
method_scores(
    method=smk.wildcards.method,
    raw_paths={"scores": smk.input.raw, "whole_loss": smk.input.raw_whole_loss},
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    heldout=(smk.input.masks, smk.input.outputs, heldout) if heldout else None,
    outputs=dict(smk.output.items()),
    influence=dict(smk.params.influence),
    provenance=dict(smk.params.provenance),
)
