# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


MODEL_FILES = ["model.safetensors", "config.json", "loss.csv"]


def model_dir_files(model_id):
    """Named outputs of a training job (train / retrain)."""
    names = ("model", "config", "loss")
    return {key: f"{MODELS}/{model_id}/{name}" for key, name in zip(names, MODEL_FILES)}


def train_state(model_id):
    """Resumable training state: outside the declared outputs, deleted when the model is written."""
    return f"{OUT}/.train_state/{model_id}.pt"


def full_model_seed(wildcards):
    return config["train"]["seed"] + int(wildcards.i)


def subset_seed(seed_index):
    from stepattr.training.subsets import subset_model_seed as seed_of

    return seed_of(config["subsets"]["seed"], int(seed_index))


def subset_model_seed(wildcards):
    return subset_seed(wildcards.s)


# rows of subset models trained one per job (by retrain): all where subsets.group_size is 1,
# none otherwise (then the retrain_group_* jobs train them)
ONE_MODEL_ROWS = r"\d+" if config["subsets"]["group_size"] == 1 else r"(?!)"


def subset_groups():
    """(job name, seed index, subset rows) of each batched retraining job: the subset models
    of one seed index (they share their seed), subsets.group_size rows at a time."""
    sub = config["subsets"]
    rows, size = list(range(sub["count"] + sub["heldout"])), sub["group_size"]
    if size == 1:
        return []
    return [
        (f"retrain_group_s{s}_r{chunk[0]}_{chunk[-1]}", s, chunk)
        for s in range(sub["seeds"])
        for chunk in (rows[i : i + size] for i in range(0, len(rows), size))
    ]


def subset_row(wildcards):
    return int(wildcards.j)


def training_outputs():
    """The full models, the subset models and their subsets."""
    models = full_model_ids() + subset_model_ids("scored") + subset_model_ids("heldout")
    files = [f"{MODELS}/{m}/{name}" for m in models for name in MODEL_FILES]
    return files + [f"{OUT}/subsets/masks.npy", f"{OUT}/subsets/subsets.csv"]

