"""Rule prompt_following: prompted samples of full_0 under each guidance scale, decoded and
classified -> tables/prompt_following.{csv,md}, figures/prompts.png (stepattr.targets.prompts)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.targets.jobs import run_prompt_following  # noqa: E402

run_prompt_following(smk)
