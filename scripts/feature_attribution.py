"""Rule feature_attribution: do the top influencers at the transition carry the feature?"""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

from stepattr.feature_attribution import (  # noqa: E402
    influencer_fractions,
    load_intervals,
    load_scores,
    markdown_report,
    summarize,
)
from stepattr.images import load_split  # noqa: E402
from stepattr.io import save_csv, save_text, sha256_file  # noqa: E402
from stepattr.provenance import describe_config  # noqa: E402

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
