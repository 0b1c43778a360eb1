"""Rule influence_model_scores: one model's influence scores for every (variant, damping)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

from stepattr.influence.jobs import model_scores  # noqa: E402

model_scores(
    model_dir=Path(smk.input.model).parent,
    factors_path=smk.input.factors,
    train_split=smk.input.train,
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    out_paths={"scores": smk.output.scores, "whole_loss": smk.output.whole_loss},
    model_id=smk.wildcards.model_id,
    output_function=smk.wildcards.output_function,
    influence=dict(smk.params.influence),
    attribution=dict(smk.params.attribution),
    device=smk.params.device,
)
