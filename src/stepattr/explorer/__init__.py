"""Stage explorer: one self-contained page to walk every target's journey, step by step.

Rule (rules/explorer.smk): ``explorer``. Script: scripts/explorer/explorer.py.
Inputs: the targets, the train split, the scores of every method of the LDS table but the
random baseline (stages trak, influence, lds), ``{outdir}/tables/lds.csv`` (its ``ceiling``
rows where subsets.seeds >= 2), the feature curves and transition intervals (stage
transitions, where the run has them) and the patch scores (stage figures, where
figures.patch_targets is set). Output: ``{outdir}/explorer/index.html`` (data, styles, script
and images inline: it opens from the file system, no server, no network). Config: ``explorer``.

Modules (import them directly): ``data`` (what the page shows, as one JSON-able dict),
``page`` (the HTML around it; ``page.css`` and ``page.js`` beside it), ``jobs`` (the rule's
file-in, file-out step).
"""
