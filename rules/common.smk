# Shared by two or more stages: config validation, the output folders, model ids, target
# and feature files, resources. A stage's own helpers sit in rules/functions/<stage>.smk.
# Rules call these helpers; no lambdas in rules.

from stepattr.core.names import (
    BASELINES,
    DATASET_SOURCES,
    LATENT_FAMILIES,
    MODEL_ID_PATTERN,
    REFERENCE_MODEL,
    REMOVAL_RULES,
    REMOVED_MODEL_PATTERN,
    SCORE_PARTS,
    full_model_id,
    method_name,
    subset_model_id,
)
from snakemake.settings.types import DeploymentMethod

from stepattr.workflow.deployment import conda_missing
from stepattr.workflow.configs import (
    ConfigError,
    apply_typed_overrides,
    check_stacking,
    load_schema,
    model_spec,
    pipeline_transitions_enabled,
    resolve_pipeline,
    validate_config,
)


SCHEMA = load_schema(f"{workflow.basedir}/config/schema.yaml")
# values inside a nested `--config key={sub: value}` arrive as strings: give them the schema's types
apply_typed_overrides(config, workflow.config_settings.config, SCHEMA)
try:
    check_stacking(workflow.config_settings.configfiles)  # a partial overlay is not run alone
    # the schema, in every process (it fills the defaults); an error is a few lines naming the
    # key, its value and what is allowed (Snakemake's validate() prints the schema and config)
    validate_config(config, SCHEMA)
    # a stable_diffusion config's autoencoder, text encoder and schedule are its pipeline's
    resolve_pipeline(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}")
conda_problem = conda_missing(
    DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method,
    workflow.deployment_settings.conda_frontend or "conda",
)
if conda_problem:  # Snakemake's own message is "Error running conda info"
    raise WorkflowError(conda_problem)
if workflow.is_main_process:
    # Relations between keys (stepattr.workflow.checks, which imports torch): checked once before any
    # job, not again in each job's own Snakemake process (a SLURM job would pay seconds).
    from stepattr.workflow.checks import check_config

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
TRANSITIONS = f"{OUT}/transitions"
CF_DIR = f"{OUT}/counterfactual"
TARGET_SETS = ["generated", "validation"] if config["sampling"]["num_validation"] else ["generated"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    model_id=MODEL_ID_PATTERN,
    target_set="|".join(TARGET_SETS),
    shard=r"\d+",


# The text-to-image family's frozen autoencoder: trained by rules/latents.smk, read there and by
# the prompted samples of rules/targets.smk.
AUTOENCODER = f"{OUT}/autoencoder"


def autoencoder_files():
    """The autoencoder's folder files: the configured pretrained one, else the one trained here."""
    pretrained = config["autoencoder"]["pretrained"]
    if pretrained is not None and Path(pretrained).is_dir():
        return [f"{pretrained}/config.json"]
    if pretrained is not None:
        return []  # a hub id: diffusers fetches it (where the hub is reachable)
    return [f"{AUTOENCODER}/model/config.json", f"{AUTOENCODER}/model/diffusion_pytorch_model.safetensors"]


def autoencoder_hub_id():
    """The pretrained autoencoder's hub id, None where it is a folder or trained here (the
    scripts then load the folder of the first autoencoder input)."""
    pretrained = config["autoencoder"]["pretrained"]
    return pretrained if pretrained is not None and not Path(pretrained).is_dir() else None


def conditioning_inputs():
    """The text-to-image family's latent cache and the text states its UNet is conditioned on,
    for the jobs that train it or run it on training examples or targets; nothing for the
    pixel family."""
    if config["family"] not in LATENT_FAMILIES:
        return {}
    return {"latents": f"{OUT}/latents/latents.npz", "text_states": f"{OUT}/text/states.npz"}


def decoding_inputs():
    """Jobs that sample the text-to-image family's latents under prompts and decode them
    (targets, completions): its conditioning inputs and the autoencoder; nothing for the pixel
    family."""
    if config["family"] not in LATENT_FAMILIES:
        return {}
    return {**conditioning_inputs(), "autoencoder": autoencoder_files()}


def all_outputs():
    """Every final output of the DAG: what `rule all` builds (each stage's *_outputs)."""
    if config["family"] in LATENT_FAMILIES:
        return text_to_image_outputs()
    return (
        datasets_outputs()
        + training_outputs()
        + targets_outputs()
        + featurize_outputs()
        + influence_outputs()
        + classifier_outputs()
        + lds_outputs()
        + counterfactual_outputs()
        + figures_outputs()
        + explorer_outputs()
    )


def text_to_image_outputs():
    """What the text-to-image family builds so far: its data, frozen autoencoder
    and text encoder, the full and subset models, their prompt following, the prompted
    targets, TRAK scores, the LDS tables and figure, the feature transitions (where the
    images have classes to detect), the influencer figures, the explorer page, and its parts
    saved as one StableDiffusionPipeline folder."""
    prompts = [f"{TABLES}/prompt_following.md", f"{FIGURES}/prompts.png"]
    targets = target_files() + [f"{TARGETS}/generated.png"]
    return (
        datasets_outputs()
        + latents_outputs()
        + text_outputs()
        + training_outputs()
        + prompts
        + targets
        + featurize_outputs()
        + lds_outputs()
        + (classifier_outputs() if DATASET_SOURCES[config["dataset"]["source"]]["classes"] else [])
        + figures_outputs()
        + explorer_outputs()
        + pipeline_outputs()
    )


def model_params():
    """What the train rules build (stepattr.workflow.configs.model_spec): the model section,
    or a LoRA spec on the stable_diffusion family's pipeline UNet."""
    return model_spec(config)


def score_files(method):
    """A method's score directory, {SCORES}/<method>/: scores.npy, index.csv, meta.json by name."""
    return {name: f"{SCORES}/{method}/{name}.{ext}" for name, ext in SCORE_PARTS}


def method_score_files(method):
    """A method of the LDS tables: its score directory and whole_loss.npy, its scores for
    D-TRAK's whole-loss protocol (stepattr.trak.storage)."""
    return score_files(method) | {"whole_loss": f"{SCORES}/{method}/whole_loss.npy"}


def loss_method():
    """TRAK with the loss output function of attribution.projector: the scores that graddot,
    the counterfactual removals, feature attribution and the figures read by default."""
    return method_name("loss", config["attribution"]["projector"])


def full_model_ids():
    """The TRAK ensemble: independently seeded models on all training data."""
    return [full_model_id(i) for i in range(config["models"]["full"]["count"])]


def subset_model_ids(part="scored"):
    """Models retrained on random subsets: `scored` ones give the LDS, `heldout` ones pick lambda."""
    sub = config["subsets"]
    rows = range(sub["count"]) if part == "scored" else range(sub["count"], sub["count"] + sub["heldout"])
    return [subset_model_id(j, s) for j in rows for s in range(sub["seeds"])]


def model_file(model_id):
    return f"{MODELS}/{model_id}/model.safetensors"


def target_files():
    return [f"{TARGETS}/{name}.npz" for name in TARGET_SETS]


def config_files():
    """Config files of this run, recorded in each model's config.json."""
    return [str(f) for f in workflow.configfiles]


def config_provenance():
    """Config files in load order (later override earlier) and --config values, for tables."""
    import os

    given = [os.path.relpath(f) for f in workflow.config_settings.configfiles]
    files = [f for f in map(os.path.relpath, config_files()) if f not in given] + given
    return {
        "config_files": list(dict.fromkeys(files)),
        "config_overrides": dict(workflow.config_settings.config),
    }


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
    """A runtime request: twice the estimate (stepattr.workflow.cost) plus 10 minutes."""
    return int(10 + 2 * seconds / 60)


def job_runtime(rule, units=1, projector=None):
    """Minutes requested by a job of `rule` doing `units` times the work that
    stepattr.workflow.cost.job_seconds estimates for one."""
    from stepattr.workflow.cost import job_seconds

    return minutes(units * job_seconds(config, rule, device_kind(), projector))


def split_mem_mb(base):
    """Memory of a job that holds the whole training split (stepattr.workflow.cost)."""
    from stepattr.workflow import cost

    return cost.split_mem_mb(config, base)


def torch_mem_mb(batch_size):
    """Host memory of a UNet job at ``batch_size`` (stepattr.workflow.cost)."""
    from stepattr.workflow import cost

    return cost.torch_mem_mb(config, batch_size)


def attribution_methods():
    """TRAK methods of this run, one per attribution.output_functions: trak (loss), dtrak
    (square_norm), with a projector suffix where the projector changes the features; for
    attribution.projector, then each of attribution.compare_projectors (trak_factored, ...)."""
    from stepattr.core.names import attribution_methods as methods_of

    return methods_of(config["attribution"])


def method_output_function(wildcards):
    from stepattr.core.names import parse_method, unsuffixed_projector

    return parse_method(wildcards.method, unsuffixed_projector(config["attribution"]))[0]


def method_projector(wildcards):
    from stepattr.core.names import parse_method, unsuffixed_projector

    return parse_method(wildcards.method, unsuffixed_projector(config["attribution"]))[1]


def method_features(method):
    """Train and target feature files of a TRAK method, model-major, target sets in order, and
    the .json records of both (stepattr.trak.storage checks them on every read)."""
    models = full_model_ids()
    train = [f"{FEATURES}/{method}/{m}/train.npy" for m in models]
    target = [f"{FEATURES}/{method}/{m}/{s}.npy" for m in models for s in TARGET_SETS]
    whole = [f.removesuffix(".npy") + "_whole_loss.npy" for f in target]
    return {
        "train_features": train,
        "target_features": target,
        "whole_loss_features": whole,
        "infos": [f.removesuffix(".npy") + ".json" for f in train + target + whole],
    }


def featurize_mem_mb():
    """Host memory of a featurization job (stepattr.workflow.cost)."""
    from stepattr.workflow import cost

    return cost.featurize_mem_mb(config, uses_gpu())


def score_mem_mb():
    """Host memory of a score job (stepattr.workflow.cost)."""
    from stepattr.workflow import cost

    return cost.score_mem_mb(config)


def clip_inputs():
    """The CLIP weights file where clip.weights names a local file (a change reruns the curves)."""
    from pathlib import Path

    weights = config["clip"]["weights"]
    return [weights] if weights is not None and Path(weights).is_file() else []


def ground_truth_resamples():
    """R of the ground truth f_t: lds.target_resamples, else the featurizer's R."""
    return config["lds"]["target_resamples"] or config["attribution"]["target_resamples"]


def subset_train_steps():
    """Steps of a subset model: subsets.train_steps, else the full models' train.steps."""
    return config["subsets"]["train_steps"] or config["train"]["steps"]


def counterfactual_train_steps():
    """Steps of a retrained model: counterfactual.train_steps, else full_0's train.steps."""
    return config["counterfactual"]["train_steps"] or config["train"]["steps"]


def figure_targets():
    """(target_set, target_id) of the per-target figures: the first figures.targets_per_set
    targets of each set (all where null)."""
    sampling, per_set = config["sampling"], config["figures"]["targets_per_set"]
    first = {"generated": 0, "validation": sampling["num_targets"]}
    count = {"generated": sampling["num_targets"], "validation": sampling["num_validation"]}
    return [
        (name, first[name] + i) for name in TARGET_SETS for i in range(min(count[name], per_set or count[name]))
    ]
