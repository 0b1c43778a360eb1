"""Rule export_lora: full_0's LoRA adapters in diffusers' format, checked to load as full_0
-> {OUT}/pipeline/lora/pytorch_lora_weights.safetensors (stepattr.stable_diffusion.export)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

from stepattr.stable_diffusion.export import export_lora  # noqa: E402

folder = Path(smk.output.weights).parent
diff = export_lora(Path(smk.input.model).parent, folder)
print(
    f"LoRA adapters of full_0 saved to {folder}; loaded by diffusers' load_lora_weights on "
    f"the base pipeline they predict within {diff:.2g} of full_0 (checked on one input)"
)
