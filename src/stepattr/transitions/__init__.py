"""Stage transitions: at which step a sample decides its feature, and who shaped it there.

Rules (rules/transitions.smk): ``train_classifier`` (the workflow's feature detector and
embedding), ``feature_curves`` (P(feature | x_t) from completions, steepest-rise intervals),
``feature_attribution`` (top influencers at the transition), ``transition_figure``.
Scripts: scripts/transitions/.
Inputs: the train/test splits, full_0, the targets, TRAK scores (stage trak), CLIP weights
where configured. Outputs: ``{outdir}/classifier/``, ``{outdir}/transitions/<set>.csv`` and
``<set>_intervals.csv``, ``{outdir}/tables/feature_attribution.{csv,md}``,
``{outdir}/figures/transitions.png``. Config: ``classifier``, ``clip``, ``transitions``.

Modules (the detectors themselves: stepattr.detectors):
``curves`` (completions, curves, intervals), ``feature_attribution``, ``figure``.
"""
