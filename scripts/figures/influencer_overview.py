"""Rule influencer_overview: top influencers per step of a few targets in one figure."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.figures.jobs import overview_job  # noqa: E402

overview_job(
    scores={"scores": smk.input.scores, "index": smk.input.index, "meta": smk.input.meta},
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    train_path=smk.input.train,
    target_ids=list(smk.params.target_ids),
    top_k=smk.params.top_k,
    png=smk.output[0],
    provenance=dict(smk.params.provenance),
)
