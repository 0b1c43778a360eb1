"""Rule score: TRAK scores of one method from every full model's features, averaged."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

import logging  # noqa: E402

from stepattr.trak.workflow import score_method  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
score_method(
    method=smk.wildcards.method,
    models=smk.params.models,
    train_paths=smk.input.train_features,
    target_paths=smk.input.target_features,
    target_files=smk.input.targets,
    target_sets=smk.params.target_sets,
    lambda_path=smk.input.lam,
    outputs={"scores": smk.output.scores, "index": smk.output.index, "meta": smk.output.meta},
    attribution=dict(smk.params.attribution),
    provenance=dict(smk.params.provenance),
)
