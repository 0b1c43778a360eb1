"""Stage lds: the linear datamodeling score of every method, against subset retraining.

Rules (rules/lds.smk): ``eval_subset_outputs`` (each subset model's f_t and D-TRAK loss on
every target), ``select_lambda`` (TRAK's lambda on held-out subsets), ``baseline_scores`` and
``embedding_scores`` (the baselines), ``lds`` (tables), ``lds_figure``. Scripts: scripts/lds/.
Inputs: the subset models and masks (stage training), the targets, the TRAK features and
scores (stage trak), the classifier (stage transitions, for the embedding baseline).
Outputs: ``{outdir}/lds/outputs/<model_id>.npz``, ``{outdir}/scores/<method>/lambda.json``,
``{outdir}/scores/<baseline>/``, ``{outdir}/tables/lds{,_dtrak}.{csv,md}``,
``{outdir}/figures/lds.png``. Config: ``lds``, ``subsets``, ``attribution.lambdas``.

Modules: ``ground_truth`` (subset outputs: writer and reader), ``metric`` (Spearman, the
two-way bootstrap, lambda selection), ``baselines`` (random, pixel, embedding, graddot),
``tables`` (LDS rows, Markdown, the figure), ``jobs`` (the rules' file-in, file-out steps).
"""
