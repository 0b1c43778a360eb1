"""Rule export_lora: full_0's LoRA adapters in diffusers' format, checked to load as full_0
-> {OUT}/pipeline/lora/pytorch_lora_weights.safetensors (stepattr.stable_diffusion.export)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.stable_diffusion.jobs import run_export_lora  # noqa: E402

run_export_lora(smk)
