"""Rule influencer_overview: top influencers per step of a few targets in one figure."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

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
