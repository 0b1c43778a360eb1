"""Rule feature_attribution: do the top influencers at the transition carry the feature?"""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.core.images import load_split  # noqa: E402
from stepattr.core.io import save_csv, save_text, sha256_file  # noqa: E402
from stepattr.core.provenance import describe_config  # noqa: E402
from stepattr.trak.storage import load_scores  # noqa: E402
from stepattr.transitions.feature_attribution import (  # noqa: E402
    influencer_fractions,
    load_intervals,
    markdown_report,
    summarize,
)

cfg = smk.params.transitions
scores, index, grid, meta = load_scores(smk.input.scores, smk.input.index, smk.input.meta)
intervals = load_intervals(dict(zip(smk.params.target_sets, smk.input.intervals, strict=True)))
_, train_labels, _ = load_split(smk.input.train)
per_target = influencer_fractions(scores, index, grid, intervals, train_labels, cfg["top_k"])
summary = summarize(per_target, intervals)
header = {
    "config": describe_config(smk.params.provenance),
    "transitions": {k: cfg[k] for k in ("detector", "completions", "completion_steps", "seed")},
    "detector used": ", ".join(sorted(set(intervals["detector"]))),
    "scores": f"{meta.get('method')} (lambda {meta.get('lambda')}, models {meta.get('models')})",
    "inputs": ", ".join(
        f"{p} (sha256 {sha256_file(p)[:12]})" for p in [smk.input.scores, *smk.input.intervals]
    ),
}
save_csv(smk.output.per_target, per_target)
save_csv(smk.output.table, summary)
save_text(smk.output.markdown, markdown_report(summary, header, cfg["top_k"]))
print(summary.to_string())
