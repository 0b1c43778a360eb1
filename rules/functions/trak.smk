# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


# attribution keys the features depend on (lambdas and output_functions do not: changing them
# must not rerun featurization)
FEATURIZE_KEYS = [
    "train_timesteps",
    "train_timestep_draws",
    "target_resamples",
    "proj_dim",
    "feature_dtype",
    "batch_size",
    "draws_per_pass",
    "factored_expansion",
    "shards",
    "seed",
]


def featurize_settings():
    att = config["attribution"]
    return {key: att[key] for key in FEATURIZE_KEYS if key in att}


def featurize_outputs():
    """TRAK features and scores."""
    return [path for m in attribution_methods() for path in score_files(m).values()]


def featurize_train_runtime(wildcards):
    return job_runtime("featurize_train", projector=method_projector(wildcards))


def featurize_targets_runtime(wildcards):
    return job_runtime("featurize_targets", projector=method_projector(wildcards))


def train_feature_shards(wildcards):
    """A model's train-feature shards, in order (with their .json records)."""
    base = f"{FEATURES}/{wildcards.method}/{wildcards.model_id}/train"
    shards = range(config["attribution"]["shards"])
    return {
        "features": [f"{base}_{s}.npy" for s in shards],
        "infos": [f"{base}_{s}.json" for s in shards],
    }


def score_inputs(wildcards):
    """Every full model's features of a method (model-major), the targets and lambda.json."""
    return {
        **method_features(wildcards.method),
        "targets": target_files(),
        "lam": f"{SCORES}/{wildcards.method}/lambda.json",
    }


def gather_mem_mb():
    """Host memory of gathering a model's train shards (stepattr.workflow.cost)."""
    from stepattr.workflow import cost

    return cost.gather_mem_mb(config)
