# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


LDS_DIR = f"{OUT}/lds"


def lds_outputs():
    """Subset ground truth, baselines, LDS tables and figure."""
    return [
        f"{TABLES}/lds.csv",
        f"{TABLES}/lds.md",
        f"{TABLES}/lds_fresh_noise.csv",
        f"{TABLES}/lds_dtrak.csv",
        f"{TABLES}/lds_dtrak.md",
        f"{TABLES}/lds_paired.csv",
        f"{TABLES}/lds_paired.md",
        f"{FIGURES}/lds.png",
    ]


def subset_output_files(part):
    return [f"{LDS_DIR}/outputs/{model_id}.npz" for model_id in subset_model_ids(part)]


def baseline_methods():
    """Baselines in every LDS table; graddot only where loss features are computed."""
    return [b for b in BASELINES if b != "graddot" or loss_method() in attribution_methods()]


def lds_methods():
    return attribution_methods() + influence_methods() + baseline_methods()


def select_lambda_inputs(wildcards):
    """Held-out subset outputs and the method's features (none without held-out subsets)."""
    if not config["subsets"]["heldout"]:
        return {}
    return {
        "masks": f"{OUT}/subsets/masks.npy",
        "outputs": subset_output_files("heldout"),
        **method_features(wildcards.method),
    }


def baseline_inputs(wildcards):
    """Targets and training images, plus the features graddot reuses."""
    inputs = {"targets": target_files(), "train": f"{DATA}/train.npz"}
    if wildcards.baseline == "graddot":
        inputs.update(method_features(loss_method()))
    return inputs


def lds_score_files():
    """scores.npy, whole_loss.npy, index.csv and meta.json of every method in the LDS tables."""
    return [path for m in lds_methods() for path in method_score_files(m).values()]
