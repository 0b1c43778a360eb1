"""Rule encode_text: the frozen encoder's states of every training caption -> states.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.text.encoder import load_text_encoder, write_text_states  # noqa: E402

torch.set_num_threads(smk.threads)
inputs = smk.input.text_encoder
source = Path(inputs[0]).parent.parent if inputs else smk.params.hub_id
tokenizer, encoder = load_text_encoder(source, resolve_device(smk.params.device))
prompts = [prompt["text"] for prompt in smk.params.prompts]
count = write_text_states(tokenizer, encoder, smk.input.train, prompts, smk.output.states)
print(f"{count} distinct captions encoded")
