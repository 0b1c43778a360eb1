# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


def counterfactual_outputs():
    """Table and figure of the removal-and-retrain check."""
    return [f"{TABLES}/counterfactual.csv", f"{TABLES}/counterfactual.md", f"{FIGURES}/counterfactual.png"]


def counterfactual_reference():
    """The model removals are compared with: full_0 where the retraining repeats its recipe,
    else removed_none (all data, the retraining's steps, full_0's seed)."""
    return "full_0" if counterfactual_train_steps() == config["train"]["steps"] else "removed_none"


def removed_model_ids():
    """One retrained model per removal rule, pair and fraction."""
    from stepattr.core.names import removed_model_id

    cf = config["counterfactual"]
    return [
        removed_model_id(rule, pair, j)
        for rule in cf["rules"]
        for pair in range(len(cf["pairs"]))
        for j in range(len(cf["fractions"]))
    ]


def counterfactual_pair_inputs():
    """The generated targets, plus the transition intervals where a pair's step is null."""
    inputs = {"targets": f"{TARGETS}/generated.npz"}
    if any(pair["step"] is None for pair in config["counterfactual"]["pairs"]):
        inputs["intervals"] = f"{TRANSITIONS}/generated_intervals.csv"
    return inputs


def removal_inputs(wildcards):
    """Pairs, grid, train split and TRAK scores (every removal records them), plus the rule's
    own scores; each score directory's scores.npy, index.csv and meta.json."""
    trak = score_files(loss_method())
    inputs = {
        "pairs": f"{CF_DIR}/pairs.csv",
        "targets": f"{TARGETS}/generated.npz",
        "train": f"{DATA}/train.npz",
        **{f"trak_{name}": path for name, path in trak.items()},
    }
    if wildcards.removal in ("pixel", "trak"):
        inputs.update(score_files("pixel") if wildcards.removal == "pixel" else trak)
    return inputs


def counterfactual_fraction(wildcards):
    return config["counterfactual"]["fractions"][int(wildcards.frac)]


def counterfactual_eval_pairs(wildcards):
    """Pairs a model is evaluated on: every pair for the reference, else its own."""
    from stepattr.core.names import parse_removed_model_id

    if wildcards.model_id == counterfactual_reference():
        return list(range(len(config["counterfactual"]["pairs"])))
    return [parse_removed_model_id(wildcards.model_id)[1]]


def counterfactual_eval_runtime(wildcards):
    """Minutes requested by counterfactual_eval: its pairs' completions (f_t is negligible)."""
    return job_runtime("counterfactual_eval", len(counterfactual_eval_pairs(wildcards)))


def counterfactual_eval_files():
    """Evaluations of every removed model and of the reference."""
    return [f"{CF_DIR}/eval/{m}.csv" for m in removed_model_ids() + [counterfactual_reference()]]
