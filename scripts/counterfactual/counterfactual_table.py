"""Rule counterfactual_table: changes against the reference, per pair and per (rule, fraction)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

import pandas as pd  # noqa: E402

from stepattr.core.io import save_csv, save_text  # noqa: E402
from stepattr.counterfactual.report import (  # noqa: E402
    counterfactual_header,
    counterfactual_markdown,
    pair_changes,
    removal_summary,
    summarize,
)

cfg, recipe = smk.params.counterfactual, smk.params.recipe
evals = pd.concat([pd.read_csv(path) for path in smk.input.evals], ignore_index=True)
removals = removal_summary(smk.params.removed_models, smk.input.removals, cfg["fractions"])
per_pair = pair_changes(evals, removals, recipe["reference"])
summary = summarize(per_pair, cfg["rules"])
pairs = pd.read_csv(smk.input.pairs)
header = counterfactual_header(
    smk.params.provenance,
    cfg,
    recipe,
    pairs,
    evals["detector"].iloc[0],
    [smk.input.pairs, f"{len(smk.input.evals)} files like {smk.input.evals[0]}",
     f"{len(smk.input.removals)} files like {smk.input.removals[0]}"],
)  # fmt: skip
print(per_pair.to_string(index=False))
print(summary.to_string(index=False))
save_csv(smk.output.per_pair, per_pair)
save_csv(smk.output.csv, summary)
save_text(smk.output.md, counterfactual_markdown(summary, header))
