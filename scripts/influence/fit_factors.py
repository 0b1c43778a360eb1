"""Rule fit_influence_factors: K-FAC factors, eigenbases and EK-FAC eigenvalues of a full model."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

from stepattr.influence.jobs import fit_factors  # noqa: E402

fit_factors(
    model_dir=Path(smk.input.model).parent,
    train_split=smk.input.train,
    out_path=smk.output.factors,
    model_id=smk.wildcards.model_id,
    influence=dict(smk.params.influence),
    attribution=dict(smk.params.attribution),
    device=smk.params.device,
)
