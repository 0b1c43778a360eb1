# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.
# The explorer reads other stages' outputs through their own helpers (lds_methods,
# transition_files, patch_score_files): it is the last stage, so the names are all defined.


EXPLORER = f"{OUT}/explorer"


def explorer_outputs():
    """The attribution explorer page."""
    return [f"{EXPLORER}/index.html"]


def explorer_methods():
    """Methods in the explorer's selector: every method of the LDS table but the random
    baseline (its top-k is a seeded draw, nothing to look at)."""
    return [m for m in lds_methods() if m != "random"]


def explorer_inputs():
    """Score files of explorer_methods() (the order of params.methods), the targets, the
    training split, the LDS table, the feature curves and intervals where the run has
    transitions, and the patch scores where it has patch targets."""
    methods = explorer_methods()
    transitions = config["family"] not in LATENT_FAMILIES or bool(
        DATASET_SOURCES[config["dataset"]["source"]]["classes"]
    )
    patches = patch_score_files() if config["figures"]["patch_targets"] else {}
    return {
        "scores": [score_files(m)["scores"] for m in methods],
        "score_index": [score_files(m)["index"] for m in methods],
        "score_meta": [score_files(m)["meta"] for m in methods],
        "targets": target_files(),
        "train": f"{DATA}/train.npz",
        "lds": f"{TABLES}/lds.csv",
        "curves": transition_files("") if transitions else [],
        "intervals": transition_files("_intervals") if transitions else [],
        "patches": [patches[name] for name in ("scores", "index", "meta")] if patches else [],
    }
