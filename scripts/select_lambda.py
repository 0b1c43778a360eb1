"""Rule select_lambda: the TRAK lambda with the best mean LDS over steps on held-out subsets."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

import numpy as np  # noqa: E402

from stepattr.io import save_json  # noqa: E402
from stepattr.lds_workflow import choose_lambda, default_lambda, load_features  # noqa: E402
from stepattr.subset_outputs import load_subset_outputs  # noqa: E402

lambdas = [float(lam) for lam in smk.params.lambdas]
if not smk.params.heldout_models:
    record = default_lambda(lambdas)
else:
    train, target = load_features(smk.input.train_features, smk.input.target_features)
    rows, f, _ = load_subset_outputs(smk.input.outputs, smk.params.heldout_models)
    masks = np.load(smk.input.masks)[rows]
    record = choose_lambda(lambdas, train, target, masks, f, rows)
print(record)
save_json(smk.output[0], {"method": smk.wildcards.method, **record})
