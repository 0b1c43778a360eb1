# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def figures_outputs():
    """Influencer figures and GIFs, the overview, patch scores and figure."""
    files = [f"{FIGURES}/influencers.png"] + influencer_figure_files("png") + influencer_figure_files("gif")
    if config["figures"]["patch_targets"]:
        files += list(patch_score_files().values()) + [f"{FIGURES}/patches.png"]
    return files


def figures_method():
    """Scores the figures draw: figures.method, else TRAK with the loss output function."""
    return config["figures"]["method"] or loss_method()


def patch_method():
    """The TRAK method of the patch attribution (it needs projected features): figures.method
    where that is a TRAK method, else TRAK with the loss output function."""
    method = figures_method()
    return method if method in attribution_methods() else loss_method()


def figures_scores():
    """scores.npy, index.csv and meta.json of figures_method(), by name."""
    return score_files(figures_method())


def influencer_figure_files(kind):
    """Per-target influencer figures (png) or animations (gif)."""
    folder = "influencers" if kind == "png" else "animations"
    return [f"{FIGURES}/{folder}/{name}_{tid}.{kind}" for name, tid in figure_targets()]


def patch_score_files():
    """Scores of the patch targets' patches, with their index and meta, by name."""
    return score_files(f"{patch_method()}/patches")


def patch_features_runtime():
    """Minutes requested by patch_features: one masked featurization per target, patch, step."""
    return job_runtime("patch_features")


def patch_score_inputs(wildcards):
    """Every full model's train and patch features (model order), lambda and the targets."""
    method = patch_method()
    train = method_features(method)["train_features"]
    patches = [f"{FEATURES}/{method}/{m}/patches.npy" for m in full_model_ids()]
    return {
        "train_features": train,
        "patch_features": patches,
        "infos": [f.removesuffix(".npy") + ".json" for f in train + patches],
        "lam": f"{SCORES}/{method}/lambda.json",
        "targets": target_files(),
    }
