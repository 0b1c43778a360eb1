"""Rule fine_tune_effect: samples of the pipeline's base UNet and of full_0 (base + LoRA) from
the same noises, classified -> tables/fine_tune_effect.{csv,md}, figures/fine_tune_effect.png
(stepattr.stable_diffusion.effect)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.stable_diffusion.jobs import run_fine_tune_effect  # noqa: E402

run_fine_tune_effect(smk)
