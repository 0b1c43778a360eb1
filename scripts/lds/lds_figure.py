"""Rule lds_figure: LDS against denoising step, one line per method, CI bands."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

import pandas as pd  # noqa: E402

from stepattr.lds.tables import plot_lds  # noqa: E402

frame = pd.read_csv(smk.input[0])
labels = dict(zip(frame["method"], frame["label"], strict=False))
files = ", ".join(smk.params.provenance["config_files"])
sub = smk.params.subsets
title = (
    f"LDS per step ({files}; {sub['count']} subsets x {sub['seeds']} model(s), "
    f"95% bootstrap CI over subsets and targets)"
)
plot_lds(frame, smk.output[0], labels, title)
