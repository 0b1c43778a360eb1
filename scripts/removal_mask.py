"""Rule removal_mask: the training examples one removal rule takes out for one pair and k."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

from stepattr.counterfactual import write_removal  # noqa: E402

removed = write_removal(
    rule=smk.wildcards.removal,
    pair=int(smk.wildcards.pair),
    fraction=float(smk.params.fraction),
    seed=int(smk.params.seed),
    pairs_path=smk.input.pairs,
    targets_path=smk.input.targets,
    train_path=smk.input.train,
    trak_paths=(smk.input.trak_scores, smk.input.trak_index),
    rule_paths=(smk.input.scores, smk.input.index) if "scores" in smk.input.keys() else None,
    mask_path=smk.output.mask,
    table_path=smk.output.table,
)
print(removed.head(20).to_string(index=False))
print(f"removed {len(removed)}; sum of TRAK scores {removed['trak_score'].sum():.6g}")
