"""Feature detectors and their statistics, on the ground floor beside the data: every stage
that asks which class an image shows (targets, latents, the Stable Diffusion stage, lds,
transitions, counterfactual) imports them from here, none from another stage.

Modules (import them directly): ``classifier`` (the workflow's own CNN: training, loading,
``predict_proba``, ``embed``; trained by rule ``train_classifier``), ``clip`` (the zero-shot
CLIP detector), ``detector`` (which of the two serves a run), ``wilson`` (the Wilson interval
of a detected rate).
"""
