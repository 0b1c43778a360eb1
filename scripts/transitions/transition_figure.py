"""Rule transition_figure: curves with the interval shaded and influencers around it."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.transitions.jobs import run_transition_figure  # noqa: E402

run_transition_figure(smk)
