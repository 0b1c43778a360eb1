"""Rule counterfactual_figure: change in f_t and P(same feature) against k, per removal rule."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

import pandas as pd  # noqa: E402

from stepattr.counterfactual.report import plot_counterfactual  # noqa: E402

summary = pd.read_csv(smk.input[0])
files = ", ".join(smk.params.provenance["config_files"])
pairs = int(summary["pairs"].max())
title = (
    f"Counterfactual check ({files}): retrained without k examples vs {smk.params.reference}, "
    f"{pairs} (target, step) pair(s)"
)
plot_counterfactual(summary, smk.output[0], smk.params.removal_rules, title)
