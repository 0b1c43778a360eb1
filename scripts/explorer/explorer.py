"""Rule explorer: one self-contained HTML page of every target, step and scored method."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

from stepattr.explorer.jobs import explorer_job  # noqa: E402

patches = list(smk.input.patches)
explorer_job(
    score_dirs={
        method: Path(scores).parent
        for method, scores in zip(smk.params.methods, smk.input.scores, strict=True)
    },
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    train_path=smk.input.train,
    lds_path=smk.input.lds,
    curve_paths=smk.input.curves,
    interval_paths=smk.input.intervals,
    patch_files=(
        {"scores": patches[0], "index": patches[1], "meta": patches[2]} if patches else None
    ),
    top_k=smk.params.top_k,
    html=smk.output.html,
    provenance=dict(smk.params.provenance),
)
