"""Stage training: the random subsets and every DDPM model of the workflow.

Rules (rules/training.smk): ``make_subsets``; ``train`` (the full models ``full_<i>``, the
TRAK ensemble) and, from the same definition via ``use rule``, ``retrain`` (subset models
``subset_<j>_s<s>`` for the LDS), ``retrain_removed`` and ``train_counterfactual_reference``
(the counterfactual removal models). Scripts: scripts/training/.
Inputs: ``{outdir}/data/<name>/train.npz`` and ``manifest.json``; the subset masks or a
removal mask. Outputs: ``{outdir}/subsets/masks.npy`` and ``subsets.csv``;
``{outdir}/models/<model_id>/model.safetensors``, ``config.json``, ``loss.csv``.
Config: ``train``, ``models``, ``subsets``, ``model``, ``diffusion``,
``counterfactual.train_steps``.

Modules: ``recipe`` (the DDPM recipe: batch order, learning rate, EMA, the one-model trainer,
resumable state), ``batched`` (G shared-batch subset models trained as one), ``train`` (the
training loop over either), ``jobs`` (the rule entry points: :func:`jobs.train_and_save`),
``conditioning`` (caption conditioning of the text-to-image family),
``subsets`` (the subset matrix and the mask-file format: :func:`subsets.save_masks`, its
writer, and :func:`subsets.load_masks` / :func:`subsets.load_subset_row`, its reader).
"""
