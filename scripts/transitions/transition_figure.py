"""Rule transition_figure: curves with the interval shaded and influencers around it."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

import pandas as pd  # noqa: E402

from stepattr.core.images import load_split, to_model_space  # noqa: E402
from stepattr.core.io import atomic_path  # noqa: E402
from stepattr.targets.sets import load_target_sets  # noqa: E402
from stepattr.transitions.feature_attribution import load_intervals  # noqa: E402
from stepattr.transitions.figure import choose_targets, transitions_figure  # noqa: E402

sets = list(smk.params.target_sets)
intervals = load_intervals(dict(zip(sets, smk.input.intervals, strict=True)))
curves = pd.concat(
    [pd.read_csv(p).assign(target_set=s) for s, p in zip(sets, smk.input.curves, strict=True)]
)
influencers = pd.read_csv(smk.input.per_target)
targets = load_target_sets(smk.input.targets, sets)  # x0hat_t decoded for text-to-image
grid = targets.grid.tolist()
x0hat = {
    (str(s), int(t)): x
    for s, t, x in zip(targets.target_set, targets.target_id, targets.image_x0hat, strict=True)
}
train_images, train_labels, class_names = load_split(smk.input.train)
chosen = choose_targets(intervals, smk.params.figure_targets)
print("targets shown:\n" + chosen.to_string())
fig = transitions_figure(
    chosen,
    curves,
    influencers,
    x0hat,
    grid,
    to_model_space(train_images).numpy(),
    train_labels,
    class_names,
    shown=smk.params.shown,
)
with atomic_path(smk.output.figure) as tmp:
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
