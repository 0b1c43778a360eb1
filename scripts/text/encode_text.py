"""Rule encode_text: the frozen encoder's states of every training caption -> states.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)


import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.text.encoder import (  # noqa: E402
    load_text_encoder,
    text_encoder_source,
    write_text_states,
)

torch.set_num_threads(smk.threads)
source = text_encoder_source(smk.input.text_encoder, smk.params.hub_id)
tokenizer, encoder = load_text_encoder(source, resolve_device(smk.params.device))
prompts = [prompt["text"] for prompt in smk.params.prompts]
count = write_text_states(tokenizer, encoder, smk.input.train, prompts, smk.output.states)
print(f"{count} distinct captions encoded")
