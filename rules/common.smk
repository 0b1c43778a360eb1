# Helpers shared by every rule file: config validation, output paths, resources.
# Rules call these helpers; no lambdas in rules.

from pathlib import Path

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
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",


def all_outputs():
    """Every final output of the DAG: what `rule all` builds."""
    return data_outputs()


# ---------------------------------------------------------------------------- data


def data_outputs():
    return [f"{DATA}/train.npz", f"{DATA}/test.npz", f"{DATA}/manifest.json"]
