# Helpers shared by every rule file: config validation, the output-path contract, resources.
# Rules call these helpers; no lambdas in rules. Each family has its own section below.

from snakemake.utils import validate

from stepattr.config import ConfigError, check_config

validate(config, schema="../config/schema.yaml")
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
    model_id=r"full_\d+|subset_\d+_s\d+",
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
    )


# ---------------------------------------------------------------------------- data


def data_outputs():
    return [f"{DATA}/train.npz", f"{DATA}/test.npz", f"{DATA}/manifest.json"]


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
    return []


# ---------------------------------------------------------------------------- featurize / score


def featurize_outputs():
    """TRAK features and scores (issue: per-step TRAK featurization)."""
    return []


# ---------------------------------------------------------------------------- classifier / transitions


def classifier_outputs():
    """Classifier, feature curves, feature attribution (issue: feature transitions)."""
    return []


# ---------------------------------------------------------------------------- lds


def lds_outputs():
    """Subset ground truth, baselines, LDS tables and figure (issue: LDS evaluation)."""
    return []
