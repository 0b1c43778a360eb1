"""Paper figures: influencers per step (PNG, GIF) and patch attribution.

Modules (import them directly): ``tiles`` (drawing images as framed, nearest-neighbour tiles),
``influencers`` (top-k influencers per step, the per-target figure, the overview, the GIF),
``patches`` (patch masks, masked target features and their scores), ``patch_figure`` (the
patch figure), ``jobs`` (the rules' file-in, file-out drivers).
"""
