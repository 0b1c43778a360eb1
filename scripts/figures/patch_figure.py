"""Rule patch_figure: each patch outlined on its target, with its top positive influencers."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.figures.jobs import patch_figure_job  # noqa: E402

patch_figure_job(
    patch_scores={
        "scores": smk.input.patch_scores,
        "index": smk.input.patch_index,
        "meta": smk.input.patch_meta,
    },
    scores={"scores": smk.input.scores, "index": smk.input.index, "meta": smk.input.meta},
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    train_path=smk.input.train,
    top_k=smk.params.top_k,
    png=smk.output[0],
    provenance=dict(smk.params.provenance),
)
