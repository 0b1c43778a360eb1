"""Rule make_subsets: subset matrix + table -> {OUT}/subsets/ (stepattr.training.subsets)."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.core.images import load_split  # noqa: E402
from stepattr.core.io import save_csv  # noqa: E402
from stepattr.training.subsets import save_masks, subset_masks, subset_table  # noqa: E402

p = smk.params
_, labels, _ = load_split(smk.input.train)
masks = subset_masks(len(labels), p.scored, p.heldout, p.alpha, p.seed)
save_masks(smk.output.masks, masks)
save_csv(smk.output.table, subset_table(masks, p.scored, p.seed))
print(
    f"{len(masks)} subsets ({p.scored} scored, {p.heldout} held out) of {masks[0].sum()} examples"
)
