# Helpers shared by rules/*.smk (config validation, the output-path contract, resources).
# Rules call these helpers; no lambdas in rules. Each family has its own section below.

from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")  # also fills the schema's defaults: every process
if workflow.is_main_process:
    # Relations between keys (stepattr.config, which imports torch): checked once before any
    # job, not again in each job's own Snakemake process (a SLURM job would pay seconds).
    from stepattr.config import ConfigError, check_config

    try:
        check_config(config)
    except ConfigError as err:
        raise WorkflowError(f"invalid config: {err}")

OUT = config["outdir"].rstrip("/")
DATASET = config["dataset"]["name"]
DATA = f"{OUT}/data/{DATASET}"
MODELS = f"{OUT}/models"
TARGETS = f"{OUT}/targets"
FEATURES = f"{OUT}/features"
SCORES = f"{OUT}/scores"
TABLES = f"{OUT}/tables"
FIGURES = f"{OUT}/figures"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
TARGET_SETS = ["generated", "validation"] if config["sampling"]["num_validation"] else ["generated"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    model_id=r"full_\d+|subset_\d+_s\d+|removed_(?:trak|random|pixel)_p\d+_f\d+|removed_none",
    target_set="|".join(TARGET_SETS),
    shard=r"\d+",


def all_outputs():
    """Every final output of the DAG: what `rule all` builds."""
    return (
        data_outputs()
        + model_outputs()
        + featurize_outputs()
        + classifier_outputs()
        + lds_outputs()
        + counterfactual_outputs()
        + figures_outputs()
    )


# ---------------------------------------------------------------------------- data


def data_outputs():
    return [f"{DATA}/train.npz", f"{DATA}/test.npz", f"{DATA}/manifest.json"]


def data_inputs():
    """Local files the dataset is read from, so that editing them reruns prepare_data."""
    ds = config["dataset"]
    if ds["source"] == "image_folder":
        return [ds["path"]] + ([ds["labels_csv"]] if ds.get("labels_csv") else [])
    if ds["source"] == "cifar10" and ds["url"].startswith("file:"):
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        return [url2pathname(urlsplit(ds["url"]).path)]
    return []


# memory (MB) and wall time (minutes) of prepare_data per source: CIFAR-10 holds the tarball's
# 60,000 images twice while it parses them; mnist5k is 5,000 small digits
DATA_RESOURCES = {
    "mnist5k": {"mem_mb": 2000, "runtime": 10},
    "cifar10": {"mem_mb": 4000, "runtime": 60},
    "image_folder": {"mem_mb": 8000, "runtime": 60},
}


def data_resource(name):
    return DATA_RESOURCES[config["dataset"]["source"]][name]


# ---------------------------------------------------------------------------- models


def full_model_ids():
    """The TRAK ensemble: independently seeded models on all training data."""
    return [f"full_{i}" for i in range(config["models"]["full"]["count"])]


def subset_model_ids(part="scored"):
    """Models retrained on random subsets: `scored` ones give the LDS, `heldout` ones pick lambda."""
    sub = config["subsets"]
    rows = range(sub["count"]) if part == "scored" else range(sub["count"], sub["count"] + sub["heldout"])
    return [f"subset_{j}_s{s}" for j in rows for s in range(sub["seeds"])]


def model_file(model_id):
    return f"{MODELS}/{model_id}/model.safetensors"


def model_outputs():
    """Training, subsets, targets (issue: DDPM training and target generation)."""
    models = full_model_ids() + subset_model_ids("scored") + subset_model_ids("heldout")
    files = [f"{MODELS}/{m}/{name}" for m in models for name in MODEL_FILES]
    files += [f"{OUT}/subsets/masks.npy", f"{OUT}/subsets/subsets.csv"]
    files += target_files() + [f"{TARGETS}/generated.png"]
    if config["sampling"]["num_preview"]:
        files += [f"{TARGETS}/preview.npy", f"{TARGETS}/preview.png"]
    return files


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


def subset_model_seed(wildcards):
    from stepattr.subsets import subset_model_seed as seed_of

    return seed_of(config["subsets"]["seed"], int(wildcards.s))


def subset_row(wildcards):
    return int(wildcards.j)


def config_files():
    """Config files of this run, recorded in each model's config.json."""
    return [str(f) for f in workflow.configfiles]


def uses_gpu():
    """Torch jobs run on CUDA: device cuda, or auto where torch sees a GPU (set cuda on clusters)."""
    if config["device"] == "auto":
        import torch

        return torch.cuda.is_available()
    return config["device"] == "cuda"


def gpu_resource():
    """The `gpu` resource of a torch job: 1 on CUDA, else 0."""
    return 1 if uses_gpu() else 0


def by_attempt(base):
    """A resource that doubles on each retry (`--retries`): a job killed for running out of
    memory or time is resubmitted with more. `base` is a number or a function of wildcards."""

    def resource(wildcards, attempt):
        value = base(wildcards) if callable(base) else base
        return int(value * 2 ** (attempt - 1))

    return resource


def device_kind():
    return "cuda" if uses_gpu() else "cpu"


def minutes(seconds):
    """A runtime request: twice the estimate (stepattr.cost) plus 10 minutes."""
    return int(10 + 2 * seconds / 60)


def job_runtime(rule, units=1, projector=None):
    """Minutes requested by a job of `rule` doing `units` times the work that
    stepattr.cost.job_seconds estimates for one."""
    from stepattr.cost import job_seconds

    return minutes(units * job_seconds(config, rule, device_kind(), projector))


def featurize_train_runtime(wildcards):
    return job_runtime("featurize_train", projector=method_projector(wildcards))


def featurize_targets_runtime(wildcards):
    return job_runtime("featurize_targets", projector=method_projector(wildcards))


def torch_mem_mb(batch_size):
    """Host memory of a UNet job: the data and torch itself, plus activations when on CPU."""
    m, size = config["model"], config["dataset"]["image_size"]
    activations = batch_size * size**2 * max(m["block_out_channels"]) * 160 / 1e6
    return int(2000 + activations)


# ---------------------------------------------------------------------------- featurize / score


SCORE_FILES = ["scores.npy", "index.csv", "meta.json"]


def featurize_outputs():
    """TRAK features and scores (issue: per-step TRAK featurization)."""
    return [f"{SCORES}/{m}/{name}" for m in attribution_methods() for name in SCORE_FILES]


def attribution_methods():
    """TRAK methods of this run, one per attribution.output_functions: trak (loss), dtrak
    (square_norm), with a projector suffix where the projector changes the features; for
    attribution.projector, then each of attribution.compare_projectors (trak_factored, ...)."""
    from stepattr.trak.methods import attribution_methods as methods_of

    return methods_of(config["attribution"])


# attribution keys the features depend on (lambdas and output_functions do not: changing them
# must not rerun featurization)
FEATURIZE_KEYS = [
    "train_timesteps",
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


def method_output_function(wildcards):
    from stepattr.trak.methods import parse_method, unsuffixed_projector

    return parse_method(wildcards.method, unsuffixed_projector(config["attribution"]))[0]


def method_projector(wildcards):
    from stepattr.trak.methods import parse_method, unsuffixed_projector

    return parse_method(wildcards.method, unsuffixed_projector(config["attribution"]))[1]


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
    files = method_features(wildcards.method)
    infos = [f.removesuffix(".npy") + ".json" for f in files["train_features"] + files["target_features"]]
    return {
        **files,
        "infos": infos,
        "targets": target_files(),
        "lam": f"{SCORES}/{wildcards.method}/lambda.json",
    }


def num_unet_parameters():
    from stepattr.cost import num_unet_parameters as count

    return count(config)


def train_size_estimate():
    from stepattr.cost import train_size

    return train_size(config)


def featurize_mem_mb():
    """Host memory of a featurization job: torch, per-example gradients (twice: per parameter,
    then flattened), activations of K draws per example, and the cached CPU projection matrix."""
    att = config["attribution"]
    p, batch = num_unet_parameters(), att["batch_size"]
    draws = att.get("draws_per_pass") or max(att["train_timesteps"], att["target_resamples"])
    matrix = 0 if uses_gpu() else min(p * att["proj_dim"] * 4, 2**32)
    # x1.25: the default config measured a 5.2 GB peak against this estimate's 5.2 GB
    return int(1.25 * (torch_mem_mb(batch * draws) + (8 * batch * p + matrix) / 1e6))


def gather_mem_mb():
    """Host memory of gathering a model's train shards: the shards and the result, float32."""
    return int(1000 + 2 * 4 * train_size_estimate() * config["attribution"]["proj_dim"] / 1e6)


def score_mem_mb():
    """Host memory of a score job: float64 kernels, target features and the score array."""
    att, sampling = config["attribution"], config["sampling"]
    k, n = att["proj_dim"], train_size_estimate()
    m = (sampling["num_targets"] + sampling["num_validation"]) * len(sampling["grid"])
    return int(2000 + (3 * 8 * k * k + 8 * (m + 8192) * k + 2 * 4 * m * n) / 1e6)


# ---------------------------------------------------------------------------- classifier / transitions


TRANSITIONS = f"{OUT}/transitions"
CLASSIFIER_FILES = ["model.safetensors", "config.json", "metrics.json"]


def classifier_outputs():
    """Classifier, feature curves, feature attribution (issue: feature transitions)."""
    return (
        [f"{OUT}/classifier/{name}" for name in CLASSIFIER_FILES]
        + transition_files("")
        + transition_files("_intervals")
        + [f"{TABLES}/feature_attribution.csv", f"{TABLES}/feature_attribution.md"]
        + [f"{FIGURES}/transitions.png"]
    )


def transition_files(suffix):
    """Curves ("") or intervals ("_intervals") of every target set, in TARGET_SETS order."""
    return [f"{TRANSITIONS}/{name}{suffix}.csv" for name in TARGET_SETS]


def clip_inputs():
    """The CLIP weights file where clip.weights names a local file (a change reruns the curves)."""
    from pathlib import Path

    weights = config["clip"]["weights"]
    return [weights] if weights is not None and Path(weights).is_file() else []


def feature_attribution_method():
    """Scores read by feature attribution: transitions.method, else TRAK with the loss function."""
    from stepattr.trak.methods import method_name

    return config["transitions"]["method"] or method_name("loss", config["attribution"]["projector"])


def feature_attribution_scores(name):
    """scores.npy, index.csv or meta.json of the method feature attribution reads."""
    return f"{SCORES}/{feature_attribution_method()}/{name}"


def completion_runtime(wildcards):
    """Minutes requested by feature_curves: N completions per target of this set and grid step."""
    from stepattr.cost import completion_passes, forward_seconds, set_sizes

    passes = set_sizes(config)[wildcards.target_set] * completion_passes(
        config, list(config["sampling"]["grid"]), config["transitions"]["completions"]
    )
    return minutes(forward_seconds(config, passes, device_kind()))


# ---------------------------------------------------------------------------- lds


LDS_DIR = f"{OUT}/lds"
BASELINES = ["random", "pixel", "embedding", "graddot"]


def lds_outputs():
    """Subset ground truth, baselines, LDS tables and figure (issue: LDS evaluation)."""
    return [
        f"{TABLES}/lds.csv",
        f"{TABLES}/lds.md",
        f"{TABLES}/lds_dtrak.csv",
        f"{TABLES}/lds_dtrak.md",
        f"{FIGURES}/lds.png",
    ]


def config_provenance():
    """Config files in load order (later override earlier) and --config values, for tables."""
    import os

    given = [os.path.relpath(f) for f in workflow.config_settings.configfiles]
    files = [f for f in map(os.path.relpath, config_files()) if f not in given] + given
    return {
        "config_files": list(dict.fromkeys(files)),
        "config_overrides": dict(workflow.config_settings.config),
    }


def ground_truth_resamples():
    """R of the ground truth f_t: lds.target_resamples, else the featurizer's R."""
    return config["lds"]["target_resamples"] or config["attribution"]["target_resamples"]


def target_files():
    return [f"{TARGETS}/{name}.npz" for name in TARGET_SETS]


def subset_output_files(part):
    return [f"{LDS_DIR}/outputs/{model_id}.npz" for model_id in subset_model_ids(part)]


def graddot_method():
    """The TRAK method whose features the graddot baseline reuses: the loss output function."""
    from stepattr.trak.methods import method_name

    return method_name("loss", config["attribution"]["projector"])


def baseline_methods():
    """Baselines in every LDS table; graddot only where loss features are computed."""
    return [b for b in BASELINES if b != "graddot" or graddot_method() in attribution_methods()]


def lds_methods():
    return attribution_methods() + baseline_methods()


def method_features(method):
    """Train and target feature files of a TRAK method, model-major, target sets in order."""
    models = full_model_ids()
    return {
        "train_features": [f"{FEATURES}/{method}/{m}/train.npy" for m in models],
        "target_features": [f"{FEATURES}/{method}/{m}/{s}.npy" for m in models for s in TARGET_SETS],
    }


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
        inputs.update(method_features(graddot_method()))
    return inputs


def lds_score_files():
    """scores.npy, index.csv and meta.json of every method in the LDS tables."""
    return [f"{SCORES}/{m}/{f}" for m in lds_methods() for f in ("scores.npy", "index.csv", "meta.json")]


# ---------------------------------------------------------------------------- counterfactual


CF_DIR = f"{OUT}/counterfactual"


def counterfactual_outputs():
    """Table and figure of the removal-and-retrain check (issue: counterfactual check)."""
    return [f"{TABLES}/counterfactual.csv", f"{TABLES}/counterfactual.md", f"{FIGURES}/counterfactual.png"]


def counterfactual_train_steps():
    """Steps of a retrained model: counterfactual.train_steps, else full_0's train.steps."""
    return config["counterfactual"]["train_steps"] or config["train"]["steps"]


def counterfactual_reference():
    """The model removals are compared with: full_0 where the retraining repeats its recipe,
    else removed_none (all data, the retraining's steps, full_0's seed)."""
    return "full_0" if counterfactual_train_steps() == config["train"]["steps"] else "removed_none"


def removed_model_ids():
    """One retrained model per removal rule, pair and fraction."""
    from stepattr.model_ids import removed_model_id

    cf = config["counterfactual"]
    return [
        removed_model_id(rule, pair, j)
        for rule in cf["rules"]
        for pair in range(len(cf["pairs"]))
        for j in range(len(cf["fractions"]))
    ]


def counterfactual_trak_method():
    """TRAK scores read by the removal of top TRAK influencers; the loss output function of attribution.projector."""
    from stepattr.trak.methods import method_name

    return method_name("loss", config["attribution"]["projector"])


def counterfactual_pair_inputs():
    """The generated targets, plus the transition intervals where a pair's step is null."""
    inputs = {"targets": f"{TARGETS}/generated.npz"}
    if any(pair["step"] is None for pair in config["counterfactual"]["pairs"]):
        inputs["intervals"] = f"{TRANSITIONS}/generated_intervals.csv"
    return inputs


def removal_inputs(wildcards):
    """Pairs, grid, train split and TRAK scores (every removal records them), plus the rule's
    own scores."""
    trak = f"{SCORES}/{counterfactual_trak_method()}"
    inputs = {
        "pairs": f"{CF_DIR}/pairs.csv",
        "targets": f"{TARGETS}/generated.npz",
        "train": f"{DATA}/train.npz",
        "trak_scores": f"{trak}/scores.npy",
        "trak_index": f"{trak}/index.csv",
    }
    if wildcards.removal == "pixel":
        inputs.update(scores=f"{SCORES}/pixel/scores.npy", index=f"{SCORES}/pixel/index.csv")
    elif wildcards.removal == "trak":
        inputs.update(scores=inputs["trak_scores"], index=inputs["trak_index"])
    return inputs


def counterfactual_fraction(wildcards):
    return config["counterfactual"]["fractions"][int(wildcards.frac)]


def counterfactual_eval_pairs(wildcards):
    """Pairs a model is evaluated on: every pair for the reference, else its own."""
    from stepattr.model_ids import parse_removed_model_id

    if wildcards.model_id == counterfactual_reference():
        return list(range(len(config["counterfactual"]["pairs"])))
    return [parse_removed_model_id(wildcards.model_id)[1]]


def counterfactual_eval_runtime(wildcards):
    """Minutes requested by counterfactual_eval: its pairs' completions (f_t is negligible)."""
    return job_runtime("counterfactual_eval", len(counterfactual_eval_pairs(wildcards)))


def counterfactual_eval_files():
    """Evaluations of every removed model and of the reference."""
    return [f"{CF_DIR}/eval/{m}.csv" for m in removed_model_ids() + [counterfactual_reference()]]


# ---------------------------------------------------------------------------- figures


def figures_outputs():
    """Influencer figures and GIFs, the overview, patch scores and figure (issue: figures)."""
    files = [f"{FIGURES}/influencers.png"] + influencer_figure_files("png") + influencer_figure_files("gif")
    if config["figures"]["patch_targets"]:
        files += list(patch_score_files().values()) + [f"{FIGURES}/patches.png"]
    return files


def figures_method():
    """Scores the figures draw: figures.method, else TRAK with the loss output function."""
    from stepattr.trak.methods import method_name

    return config["figures"]["method"] or method_name("loss", config["attribution"]["projector"])


def figures_scores():
    """scores.npy, index.csv and meta.json of figures_method(), by name."""
    return {name: f"{SCORES}/{figures_method()}/{name}.{ext}" for name, ext in SCORE_PARTS}


SCORE_PARTS = [("scores", "npy"), ("index", "csv"), ("meta", "json")]


def figure_targets():
    """(target_set, target_id) of the per-target figures: the first figures.targets_per_set
    targets of each set (all where null)."""
    sampling, per_set = config["sampling"], config["figures"]["targets_per_set"]
    first = {"generated": 0, "validation": sampling["num_targets"]}
    count = {"generated": sampling["num_targets"], "validation": sampling["num_validation"]}
    return [
        (name, first[name] + i) for name in TARGET_SETS for i in range(min(count[name], per_set or count[name]))
    ]


def influencer_figure_files(kind):
    """Per-target influencer figures (png) or animations (gif)."""
    folder = "influencers" if kind == "png" else "animations"
    return [f"{FIGURES}/{folder}/{name}_{tid}.{kind}" for name, tid in figure_targets()]


def patch_score_files():
    """Scores of the patch targets' patches, with their index and meta, by name."""
    return {name: f"{SCORES}/{figures_method()}/patches/{name}.{ext}" for name, ext in SCORE_PARTS}


def patch_features_runtime():
    """Minutes requested by patch_features: one masked featurization per target, patch, step."""
    return job_runtime("patch_features")


def patch_score_inputs(wildcards):
    """Every full model's train and patch features (model order), lambda and the targets."""
    method = figures_method()
    train = method_features(method)["train_features"]
    patches = [f"{FEATURES}/{method}/{m}/patches.npy" for m in full_model_ids()]
    return {
        "train_features": train,
        "patch_features": patches,
        "infos": [f.removesuffix(".npy") + ".json" for f in train + patches],
        "lam": f"{SCORES}/{method}/lambda.json",
        "targets": target_files(),
    }
