"""Rule autoencoder_report: reconstructions and the classifier's accuracy on them."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.provenance import describe_config  # noqa: E402
from stepattr.detectors.classifier import load_classifier  # noqa: E402
from stepattr.latents.autoencoder import autoencoder_source, load_autoencoder  # noqa: E402
from stepattr.latents.report import autoencoder_report  # noqa: E402

torch.set_num_threads(smk.threads)
device = resolve_device(smk.params.device)
source = autoencoder_source(smk.input.autoencoder, smk.params.hub_id)
table = autoencoder_report(
    load_autoencoder(source, device=device),
    load_classifier(Path(smk.input.classifier).parent, device=device),
    smk.input.test,
    smk.output.figure,
    smk.output.table,
    smk.output.markdown,
    describe_config(smk.params.provenance),
)
print(table.to_string(index=False))
