"""Rule counterfactual_pairs: each configured (target, step) pair with its step and interval."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

import pandas as pd  # noqa: E402

from stepattr.core.io import save_csv  # noqa: E402
from stepattr.counterfactual.removal import resolve_pairs  # noqa: E402
from stepattr.transitions.curves import load_targets  # noqa: E402

cfg = smk.params.counterfactual
targets = load_targets(smk.input.targets, ("grid", "target_id"))
intervals = pd.read_csv(smk.input.intervals) if "intervals" in smk.input.keys() else None
pairs = resolve_pairs(
    cfg["pairs"], targets["grid"].tolist(), len(targets["target_id"]), intervals, cfg["delta"]
)
print(pairs.to_string(index=False))
save_csv(smk.output[0], pairs)
