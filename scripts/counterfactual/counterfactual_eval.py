"""Rule counterfactual_eval: f_t and P(same feature | x_t) of one model on its pairs."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.io import save_csv  # noqa: E402
from stepattr.counterfactual.removal import evaluate_removal_model  # noqa: E402
from stepattr.detectors.detector import load_detector  # noqa: E402

torch.set_num_threads(smk.threads)
device = resolve_device(smk.params.device)
tcfg = smk.params.transitions
detector = load_detector(
    tcfg["detector"], Path(smk.input.classifier).parent, smk.params.clip, device=device
)
pairs = pd.read_csv(smk.input.pairs)
rows = evaluate_removal_model(
    smk.wildcards.model_id,
    Path(smk.input.model).parent,
    Path(smk.input.original).parent,
    smk.input.targets,
    pairs[pairs["pair"].isin(smk.params.pairs)],
    detector,
    resamples=int(smk.params.resamples),
    output_seed=int(smk.params.output_seed),
    completions=int(smk.params.completions),
    completion_steps=int(tcfg["completion_steps"]),
    completion_seed=int(tcfg["seed"]),
    batch_size=int(tcfg["batch_size"]),
    device=device,
    progress=True,
)
print(rows.to_string(index=False))
save_csv(smk.output[0], rows)
