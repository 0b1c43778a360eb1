"""Rule fine_tune_effect: samples of the pipeline's base UNet and of full_0 (base + LoRA) from
the same noises, classified -> tables/fine_tune_effect.{csv,md}, figures/fine_tune_effect.png
(stepattr.stable_diffusion.effect)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import load_model, resolve_device  # noqa: E402
from stepattr.core.images import load_split, save_image_grid, to_uint8  # noqa: E402
from stepattr.core.io import save_csv, save_text  # noqa: E402
from stepattr.core.provenance import describe_config  # noqa: E402
from stepattr.detectors.classifier import load_classifier  # noqa: E402
from stepattr.stable_diffusion.effect import fine_tune_effect  # noqa: E402
from stepattr.stable_diffusion.export import load_pipeline  # noqa: E402
from stepattr.text.encoder import token_ids  # noqa: E402

torch.set_num_threads(smk.threads)
p = smk.params
device = resolve_device(p.device)
index = smk.input.pipeline  # the pipeline folder's model_index.json
pipeline = load_pipeline(Path(index if isinstance(index, str) else index[0]).parent, device)
if p.effect["prompt"].strip():  # a prompt the pipeline would cut is an error, not a warning
    context = int(pipeline.text_encoder.config.max_position_embeddings)
    token_ids(pipeline.tokenizer, [p.effect["prompt"]], context, "pipeline.effect.prompt")
fine_tuned, _, _ = load_model(Path(smk.input.model).parent, device)
table, samples = fine_tune_effect(
    pipeline,
    {"base": pipeline.unet, "fine_tuned": fine_tuned},
    load_classifier(Path(smk.input.classifier).parent, device=device),
    load_split(smk.input.train)[1],
    p.effect,
    progress=True,
)
save_csv(smk.output.table, table)
e = p.effect
save_text(
    smk.output.markdown,
    f"What the LoRA fine-tune changes ({describe_config(p.provenance)}): {e['samples']} samples "
    f"of the pipeline's base UNet and of full_0 (base + LoRA) from the same noises, prompt "
    f"{e['prompt']!r}, guidance {e['guidance']}, {e['inference_steps']} pipeline steps "
    f"(pipeline.effect.seed {e['seed']}), labelled by the family's classifier; fractions with "
    "95% Wilson intervals, against the fine-tuning set's label distribution.\n\n"
    + table.to_markdown(index=False, floatfmt=".3f")
    + "\n",
)
shown = min(32, int(e["samples"]))
grid = torch.cat([samples["base"][:shown], samples["fine_tuned"][:shown]])
save_image_grid(smk.output.figure, to_uint8(grid), ncol=shown, scale=4)
print(table.to_string(index=False))
