"""Shared numerics, file basics, closed lists and provenance that every stage uses; no
stage-specific logic. The ground floor: it imports nothing else of the package.

Modules (import them directly): ``diffusion`` (the linear-beta DDPM schedule, the diffusers
UNet, checkpoint I/O, the ancestral sampler), ``outputs`` (the output functions f and their
seeded draws; f_t and the D-TRAK loss evaluated on a model, which the LDS ground truth and the
counterfactual both use), ``seeds`` (every seed derivation), ``io`` (atomic writers, JSON, SHA-256,
weights, benchmark files), ``names`` (the closed lists: methods, baselines, removal rules, model
ids, dataset sources, score files; torch-free, imported by rules/common.smk), ``provenance``
(how tables and figures name their config), ``images`` (uint8 <-> model space, split files,
image grids). The method these compute: docs/method.md.
"""
