"""Rule select_lambda: the TRAK lambda with the best mean LDS over steps on held-out subsets."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.core.io import save_json  # noqa: E402
from stepattr.lds.jobs import default_choice, select_lambda_job  # noqa: E402

lambdas = [float(lam) for lam in smk.params.lambdas]
if not smk.params.heldout_models:
    record = default_choice("lambda", "attribution.lambdas", lambdas)
else:
    record = select_lambda_job(
        lambdas,
        (smk.input.train_features, smk.input.target_features, smk.input.whole_loss_features),
        (smk.input.masks, smk.input.outputs),
        smk.params.heldout_models,
    )
print(record)
save_json(smk.output[0], {"method": smk.wildcards.method, **record})
