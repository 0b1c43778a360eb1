"""Stage influence: K-FAC and EK-FAC influence of every training example on f_t at every step.

Rules (rules/influence.smk): ``fit_influence_factors`` (per full model: the Kronecker
factors of the training loss's Gauss-Newton matrix, their eigenbases, EK-FAC's eigenvalues),
``influence_model_scores`` (per output function and model: every target's rotated gradient
at every grid step against every training example, for every (variant, damping) at once),
``influence_scores`` (per method: the model average at the damping chosen on the held-out
subsets). Scripts: scripts/influence/.
Inputs: ``{outdir}/models/full_<i>/``, the train split, the targets, the held-out subset
outputs and masks (stages lds, training). Outputs: ``{outdir}/influence/factors/``,
``{outdir}/influence/<output function>/<model_id>/scores.npy`` (+ ``.json``), and the score
directories ``{outdir}/scores/{ekfac,kfac}[_sqnorm]/`` that the LDS tables and figures read.
Config: ``influence`` (and ``attribution``'s draws, shared with TRAK).

Modules: ``kfac`` (layer hooks, factors, eigenbases, rotated gradients, scores: the
numerics), ``jobs`` (the rules' file-in, file-out steps and the two file formats).
"""
