"""Rule removal_mask: the training examples one removal rule takes out for one pair and k."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.counterfactual.removal import write_removal  # noqa: E402

removed = write_removal(
    rule=smk.wildcards.removal,
    pair=int(smk.wildcards.pair),
    fraction=float(smk.params.fraction),
    seed=int(smk.params.seed),
    pairs_path=smk.input.pairs,
    targets_path=smk.input.targets,
    train_path=smk.input.train,
    trak_paths=(smk.input.trak_scores, smk.input.trak_index, smk.input.trak_meta),
    rule_paths=(
        (smk.input.scores, smk.input.index, smk.input.meta)
        if "scores" in smk.input.keys()
        else None
    ),
    mask_path=smk.output.mask,
    table_path=smk.output.table,
)
print(removed.head(20).to_string(index=False))
print(f"removed {len(removed)}; sum of TRAK scores {removed['trak_score'].sum():.6g}")
