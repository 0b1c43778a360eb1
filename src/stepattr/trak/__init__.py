"""Per-step TRAK: per-example gradients, random projection, features, scores.

Modules (import them directly; this package imports nothing so the Snakefile stays light):
``gradients`` (vmap per-example gradients), ``projectors`` (random projections),
``features`` (featurizer strategies and the train/target drivers), ``scores`` (the TRAK
kernel and scores), ``methods`` (method names <-> output function and projector).
"""
