"""Stage counterfactual: remove a target's top influencers, retrain, and regenerate.

Rules (rules/counterfactual.smk): ``counterfactual_pairs`` (targets and steps), ``removal_mask``
(which examples each removal rule drops), ``counterfactual_eval`` (f_t and P(same feature)
under each retrained model), ``counterfactual_table``, ``counterfactual_figure``. The removal
models themselves are trained by stage training (``retrain_removed``,
``train_counterfactual_reference``). Scripts: scripts/counterfactual/.
Inputs: the generated targets, transition intervals, TRAK and pixel scores, the train split,
the classifier. Outputs: ``{outdir}/counterfactual/`` (pairs, removals, eval, per_pair),
``{outdir}/tables/counterfactual.{csv,md}``, ``{outdir}/figures/counterfactual.png``.
Config: ``counterfactual``.

Modules: ``removal`` (pairs, removal masks, evaluation of a retrained model), ``report``
(the summary table and figure).
"""
