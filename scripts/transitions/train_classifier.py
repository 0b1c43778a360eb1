"""Rule train_classifier: the CNN feature detector / embedding -> {OUT}/classifier/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.detectors.classifier import train_and_save_classifier  # noqa: E402

torch.set_num_threads(smk.threads)
metrics = train_and_save_classifier(
    smk.input.train,
    smk.input.test,
    Path(smk.output.model).parent,
    dict(smk.params.classifier),
    device=resolve_device(smk.params.device),
)
print(f"held-out accuracy {metrics['test_accuracy']:.4f} on {metrics['n_test']} images")
