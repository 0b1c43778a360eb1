"""Stage trak: per-step TRAK features and scores.

Rules (rules/trak.smk): ``featurize_train`` (sharded), ``gather_train_features``,
``featurize_targets``, ``score``. Scripts: scripts/trak/.
Inputs: ``{outdir}/models/full_<i>/``, the train split, ``{outdir}/targets/<set>.npz``,
``{outdir}/scores/<method>/lambda.json`` (from stage lds).
Outputs: ``{outdir}/features/<method>/<model_id>/{train,<set>}.npy`` each with its ``.json``
record; ``{outdir}/scores/<method>/scores.npy``, ``index.csv``, ``meta.json``.
Config: ``attribution``.

Modules (import them directly; this package imports nothing so the Snakefile stays light):
``gradients`` (vmap per-example gradients), ``projectors`` (random projections), ``factored``
(the LoGra-style factored projection), ``features`` (featurizer strategies and the
train/target drivers), ``scores`` (the TRAK kernel and scores, sign convention), ``storage``
(the feature-file format: the one writer and the one reader, which checks that files share
weights and projection), ``jobs`` (the rules' file-in, file-out steps).
"""
