"""Rule feature_attribution: do the top influencers at the transition carry the feature?"""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.transitions.jobs import run_feature_attribution  # noqa: E402

run_feature_attribution(smk)
