"""Rule lds_figure: LDS against denoising step, one line per method, CI bands."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

import pandas as pd  # noqa: E402

from stepattr.lds_report import plot_lds  # noqa: E402

frame = pd.read_csv(smk.input[0])
labels = dict(zip(frame["method"], frame["label"], strict=False))
files = ", ".join(smk.params.provenance["config_files"])
sub = smk.params.subsets
title = (
    f"LDS per step ({files}; {sub['count']} subsets x {sub['seeds']} model(s), "
    f"95% bootstrap CI over subsets and targets)"
)
plot_lds(frame, smk.output[0], labels, title)
