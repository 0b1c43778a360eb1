"""Stage figures: influencers per step (PNG, GIF) and patch attribution.

Rules (rules/figures.smk): ``influencer_figure``, ``influencer_overview``, ``patch_features``,
``patch_scores``, ``patch_figure``. Scripts: scripts/figures/.
Inputs: the targets, the train split, scores of ``figures.method`` (stage trak), its train
features and lambda for the patch scores. Outputs: ``{outdir}/figures/influencers.png``,
``influencers/<set>_<id>.png``, ``animations/<set>_<id>.gif``, ``patches.png``,
``{outdir}/scores/<method>/patches/``. Config: ``figures``.

Modules (import them directly): ``tiles`` (drawing images as framed, nearest-neighbour tiles),
``influencers`` (top-k influencers per step, the per-target figure, the overview, the GIF),
``patches`` (patch masks, masked target features and their scores), ``patch_figure`` (the
patch figure), ``jobs`` (the rules' file-in, file-out steps).
"""
