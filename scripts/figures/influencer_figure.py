"""Rule influencer_figure: one target's top influencers per step (PNG) and its animation (GIF)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.figures.jobs import influencer_job  # noqa: E402

influencer_job(
    scores={"scores": smk.input.scores, "index": smk.input.index, "meta": smk.input.meta},
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    train_path=smk.input.train,
    target_set=smk.wildcards.target_set,
    target_id=int(smk.wildcards.target_id),
    top_k=smk.params.top_k,
    frame_ms=smk.params.frame_ms,
    png=smk.output.png,
    gif=smk.output.gif,
    provenance=dict(smk.params.provenance),
)
