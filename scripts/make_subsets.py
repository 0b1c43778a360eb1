"""Rule make_subsets: boolean subset matrix + table -> {OUT}/subsets/ (stepattr.subsets)."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

from stepattr.images import load_split  # noqa: E402
from stepattr.io import save_csv, save_npy  # noqa: E402
from stepattr.subsets import subset_masks, subset_table  # noqa: E402

p = smk.params
_, labels, _ = load_split(smk.input.train)
masks = subset_masks(len(labels), p.scored, p.heldout, p.alpha, p.seed)
save_npy(smk.output.masks, masks)
save_csv(smk.output.table, subset_table(masks, p.scored, p.seed))
print(
    f"{len(masks)} subsets ({p.scored} scored, {p.heldout} held out) of {masks[0].sum()} examples"
)
