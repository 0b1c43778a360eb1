"""Rule feature_curves: P(feature | x_t) per target and grid step, and steepest-rise intervals
(the text-to-image family: latents completed under their prompts and decoded)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.transitions.jobs import run_feature_curves  # noqa: E402

run_feature_curves(smk)
