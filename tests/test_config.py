"""Config validation: the shipped configs pass; schema and semantic errors fail naming the key.

Errors are checked twice where it matters: through stepattr.workflow.checks.validate_file (what the
library offers) and through snakemake itself (what a user sees: the run stops before any job).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepattr.core.names import (
    DATASET_SOURCES,
    INFLUENCE_VARIANTS,
    METHOD_OUTPUT_FUNCTIONS,
    REMOVAL_RULES,
)
from stepattr.workflow.checks import ConfigError, check_config, validate_file
from stepattr.workflow.configs import (
    cached_folder,
    check_stacking,
    load_config,
    typed_value,
    validate_config,
)

CONFIGS = [
    "config/config.yaml",
    "config/ci.yaml",
    "config/cifar2.yaml",
    "config/cifar10.yaml",
    "config/lds.yaml",
    "config/digits_t2i.yaml",
    "config/coco.yaml",
]
SD_CONFIGS = ["config/digits_sd.yaml", "config/sd.yaml"]  # need a pipeline folder to validate
OVERLAYS = CONFIGS[1:] + SD_CONFIGS


@pytest.fixture(scope="module")
def default_cfg(repo: Path) -> dict[str, Any]:
    return yaml.safe_load((repo / "config/config.yaml").read_text())


def write_config(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("configfile", CONFIGS)
def test_shipped_configs_validate(repo: Path, configfile: str) -> None:
    cfg = validate_file(repo / configfile, repo / "config/schema.yaml")
    assert cfg["dataset"]["source"] in DATASET_SOURCES


def sd_overlay(repo: Path, tmp_path: Path, configfile: str, pipelines: dict, **keys) -> Path:
    """``configfile`` with its pipeline (and image folder) pointed at the test's folders, as a
    config beside a copy of the default and the schema (what validate_file reads)."""
    cfg = yaml.safe_load((repo / configfile).read_text())
    cfg["pipeline"]["path"] = str(pipelines[configfile])
    cfg["pipeline"]["transitions"]["clip"] = str(pipelines[f"clip:{configfile}"])
    if cfg["dataset"].get("source") == "image_folder":
        cfg["dataset"]["path"] = str(pipelines["images"])
    for section, values in keys.items():
        cfg[section] = cfg.get(section, {}) | values
    for name in ("config.yaml", "schema.yaml"):
        (tmp_path / name).write_text((repo / "config" / name).read_text())
    return write_config(tmp_path, cfg)


@pytest.mark.parametrize("configfile", SD_CONFIGS)
def test_stable_diffusion_configs_validate_on_a_pipeline_folder(
    repo: Path, tmp_path: Path, sd_pipelines, configfile: str
) -> None:
    path = sd_overlay(repo, tmp_path, configfile, sd_pipelines)
    cfg = validate_file(path, tmp_path / "schema.yaml")
    assert cfg["autoencoder"]["pretrained"] == str(sd_pipelines[configfile] / "vae")
    assert cfg["family"] == "stable_diffusion"


def test_stable_diffusion_bad_inputs_are_named(repo: Path, tmp_path: Path, sd_pipelines) -> None:
    config = "config/digits_sd.yaml"
    path = sd_overlay(repo, tmp_path, config, sd_pipelines, pipeline={"path": "nowhere"})
    with pytest.raises(ConfigError, match=r"pipeline.path = 'nowhere': no such folder"):
        validate_file(path, tmp_path / "schema.yaml")
    lora = {"rank": 0, "alpha": 4, "target_modules": ["to_q"]}
    path = sd_overlay(repo, tmp_path, config, sd_pipelines, pipeline={"lora": lora})
    with pytest.raises(ConfigError, match=r"pipeline.lora.rank = 0: is less than the minimum"):
        validate_file(path, tmp_path / "schema.yaml")
    transitions = {"clip": None, "features": [{"name": "digit", "prompts": ["a 1", "a 7"]}]}
    path = sd_overlay(repo, tmp_path, config, sd_pipelines)
    cfg = yaml.safe_load(path.read_text())
    cfg["pipeline"]["transitions"] |= transitions
    with pytest.raises(ConfigError, match=r"pipeline.transitions.clip is empty"):
        validate_file(write_config(tmp_path, cfg), tmp_path / "schema.yaml")
    cfg["pipeline"]["transitions"]["clip"] = str(tmp_path)  # a folder without config.json
    with pytest.raises(ConfigError, match=r"pipeline.transitions.clip = .*no such CLIPModel"):
        validate_file(write_config(tmp_path, cfg), tmp_path / "schema.yaml")
    factored = {"projector": "factored"}
    path = sd_overlay(repo, tmp_path, config, sd_pipelines, attribution=factored)
    with pytest.raises(ConfigError, match=r"factored projector does not cover LoRA"):
        validate_file(path, tmp_path / "schema.yaml")


def changed_keys(base: dict[str, Any], overlay: dict[str, Any], path: str = "") -> list[str]:
    """Keys of ``overlay`` whose value the default already has (an overlay repeats none)."""
    same = []
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            same += changed_keys(base[key], value, f"{path}{key}.")
        elif key in base and base[key] == value and type(base[key]) is type(value):
            same.append(path + key)
    return same


@pytest.mark.parametrize("configfile", OVERLAYS)
def test_configs_are_overlays_of_only_the_keys_they_change(
    repo: Path, default_cfg, configfile: str
) -> None:
    overlay = yaml.safe_load((repo / configfile).read_text())
    assert changed_keys(default_cfg, overlay) == []
    merged = load_config([repo / configfile])
    assert merged["outdir"] == overlay["outdir"]
    assert set(merged["train"]) == set(default_cfg["train"])  # sections merge key by key


def test_closed_lists_match_the_schema(repo: Path) -> None:
    """The schema's enums spell the closed lists of stepattr.core.names, nothing else."""
    props = yaml.safe_load((repo / "config/schema.yaml").read_text())["properties"]
    assert props["dataset"]["properties"]["source"]["enum"] == list(DATASET_SOURCES)
    rules = props["counterfactual"]["properties"]["rules"]["items"]["enum"]
    assert rules == list(REMOVAL_RULES)
    functions = props["attribution"]["properties"]["output_functions"]["items"]["enum"]
    assert functions == list(METHOD_OUTPUT_FUNCTIONS.values())
    assert props["influence"]["properties"]["methods"]["items"]["enum"] == list(INFLUENCE_VARIANTS)


def test_nested_config_override_keeps_its_type(run_snakemake, tmp_path: Path) -> None:
    """`--config 'train={steps: 5}'` trains 5 steps (Snakemake hands nested values over as
    strings; the workflow gives them the schema's types), the other train keys stay."""
    out = tmp_path / "results"
    proc = run_snakemake(
        "--cores", "1", "--configfile", "config/ci.yaml",
        "--config", f"outdir={out}", "train={steps: 5, seed: 7}",
        "--", str(out / "models/full_0/config.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads((out / "models/full_0/config.json").read_text())["info"]
    assert (info["steps"], info["seed"], info["train"]["batch_size"]) == (5, 7, 32)


def test_nested_config_override_of_wrong_type_names_the_key(run_snakemake) -> None:
    proc = run_snakemake("-n", "--configfile", "config/ci.yaml", "--config", "train={steps: many}")
    assert proc.returncode != 0
    assert "config key train.steps = many: not allowed" in proc.stderr + proc.stdout
    assert "allowed: an integer >= 1" in proc.stderr + proc.stdout


def test_typed_value_reads_only_non_string_keys() -> None:
    assert typed_value("5", {"type": "integer"}) == 5
    assert typed_value("[1, 2]", {"type": "array"}) == [1, 2]
    assert typed_value("null", {"type": ["integer", "null"]}) is None
    assert typed_value("007", {"type": "string"}) == "007"
    assert typed_value("many", {"type": "integer"}) == "many"


def misspelled_key(cfg: dict[str, Any]) -> None:
    cfg["dataset"]["image_sise"] = cfg["dataset"].pop("image_size")


def wrong_type(cfg: dict[str, Any]) -> None:
    cfg["train"]["steps"] = "many"


SCHEMA_ERRORS = [
    pytest.param(misspelled_key, "image_sise", id="misspelled-key"),
    pytest.param(wrong_type, "steps", id="wrong-type"),
]


@pytest.mark.parametrize(("breakage", "key"), SCHEMA_ERRORS)
def test_schema_errors_name_the_key(
    repo: Path, tmp_path: Path, default_cfg, breakage: Callable, key: str
) -> None:
    cfg = copy.deepcopy(default_cfg)
    breakage(cfg)
    with pytest.raises(ConfigError, match=key):
        validate_file(write_config(tmp_path, cfg), repo / "config/schema.yaml")


@pytest.mark.parametrize(("breakage", "key"), SCHEMA_ERRORS)
def test_snakemake_stops_on_schema_errors(
    tmp_path: Path, default_cfg, run_snakemake, breakage: Callable, key: str
) -> None:
    cfg = copy.deepcopy(default_cfg)
    breakage(cfg)
    proc = run_snakemake("-n", "--cores", "1", "--configfile", str(write_config(tmp_path, cfg)))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert key in output, output
    assert "Job stats" not in output, output  # stopped before building the DAG


def set_path(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[last] = value


SEMANTIC_ERRORS = [  # (dotted key, bad value, text the error must contain)
    ("model.norm_num_groups", 5, "model.norm_num_groups"),
    ("dataset.image_size", 18, "dataset.image_size"),
    ("subsets.alpha", 1.5, "subsets.alpha"),
    ("subsets.alpha", 0.0, "subsets.alpha"),
    ("sampling.grid", [900, 1000], "sampling.grid[1]"),
    ("sampling.grid", [925, 0], "sampling.grid"),
]


@pytest.mark.parametrize(("dotted", "value", "key"), SEMANTIC_ERRORS)
def test_semantic_errors_name_the_key(
    repo: Path, tmp_path: Path, default_cfg, dotted: str, value: Any, key: str
) -> None:
    cfg = copy.deepcopy(default_cfg)
    set_path(cfg, dotted, value)
    if dotted == "sampling.grid" and value[0] == 925:
        cfg["sampling"]["inference_steps"] = 20  # schedule 950, 900, ..., 0: 925 is off it
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace(".", r"\.")):
        validate_file(write_config(tmp_path, cfg), repo / "config/schema.yaml")


def test_check_config_alone_catches_relations(default_cfg) -> None:
    """The relations the schema cannot express, without the schema in front of them."""
    for dotted, value, key in SEMANTIC_ERRORS:
        cfg = copy.deepcopy(default_cfg)
        set_path(cfg, dotted, value)
        if value == [925, 0]:
            cfg["sampling"]["inference_steps"] = 20
        with pytest.raises(ConfigError) as err:
            check_config(cfg)
        assert key in str(err.value), (dotted, str(err.value))


def test_snakemake_stops_on_semantic_error(tmp_path: Path, default_cfg, run_snakemake) -> None:
    cfg = copy.deepcopy(default_cfg)
    cfg["model"]["norm_num_groups"] = 5
    proc = run_snakemake("-n", "--cores", "1", "--configfile", str(write_config(tmp_path, cfg)))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "model.norm_num_groups" in output, output


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (
            {"dataset": {"caption_templates": None}},
            r"needs captions: set dataset\.caption_templates",
        ),
        ({"subsets": {"shared_batches": False}}, r"needs subsets\.shared_batches: true"),
        ({"subsets": {"group_size": 4}}, r"one subset model per job: set subsets\.group_size: 1"),
        (
            {"dataset": {"image_size": 15}},
            r"dataset\.image_size = 15 cannot be downsampled 1 times",
        ),
        ({"sampling": {"prompts": []}}, r"needs sampling\.prompts"),
        ({"sampling": {"num_validation": 4}}, r"set sampling\.num_validation: 0"),
        ({"influence": {"methods": ["kfac"]}}, r"set influence\.methods: \[\]"),
        ({"figures": {"patch_targets": [0]}}, r"set figures\.patch_targets: \[\]"),
    ],
)
def test_text_to_image_config_errors_name_the_key(repo: Path, tmp_path: Path, changes, named):
    cfg = load_config([repo / "config/digits_t2i.yaml"])
    for section, values in changes.items():
        cfg[section] = {**cfg[section], **values}
    with pytest.raises(ConfigError, match=named):
        check_config(cfg)


# ---------------------------------------------------------------- errors a user can act on


def schema_error(cfg: dict[str, Any], repo: Path) -> str:
    """The message validate_config gives ``cfg`` against the shipped schema."""
    schema = yaml.safe_load((repo / "config/schema.yaml").read_text())
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, schema)
    return str(err.value)


def test_schema_errors_are_a_few_lines_with_key_value_and_allowed(repo: Path, default_cfg):
    """A top-level typo, a wrong enum value, a wrong type, an out-of-range list item: each
    message names the key path, the value and what is allowed, in at most three lines."""
    cfg = copy.deepcopy(default_cfg)
    cfg["atribution"] = cfg.pop("attribution")
    typo = schema_error(cfg, repo)
    assert typo.splitlines()[0] == (
        "unknown config key atribution (at the top level); did you mean attribution?"
    )
    assert "allowed keys at the top level: outdir, " in typo
    cfg = copy.deepcopy(default_cfg)
    cfg["device"] = "gpu"
    enum = schema_error(cfg, repo)
    assert enum.splitlines()[:2] == [
        "config key device = gpu: not allowed",
        "  allowed: one of: auto, cpu, cuda",
    ]
    cfg = copy.deepcopy(default_cfg)
    cfg["dataset"]["image_sise"] = cfg["dataset"].pop("image_size")
    nested = schema_error(cfg, repo)
    assert (
        "unknown config key dataset.image_sise (in dataset); did you mean dataset.image_size?"
    ) in nested
    cfg = copy.deepcopy(default_cfg)
    cfg["counterfactual"]["pairs"][0]["step"] = -5
    deep = schema_error(cfg, repo)
    assert deep.startswith("config key counterfactual.pairs[0].step = -5: ")
    assert "allowed: an integer >= 0 or null" in deep
    cfg = copy.deepcopy(default_cfg)
    cfg["subsets"]["alpha"] = 2
    bounded = schema_error(cfg, repo)
    assert "config key subsets.alpha = 2: is greater than or equal to the maximum of 1" in bounded
    assert "allowed: a number in (0, 1)" in bounded
    for message in (typo, enum, nested, deep, bounded):
        assert len(message.splitlines()) <= 3, message
        assert "$schema" not in message and "split_seed: 0" not in message, message


def test_snakemake_prints_the_schema_error_alone(tmp_path: Path, run_snakemake) -> None:
    """The top-level typo through Snakemake: the cause, the allowed keys, and a handful of
    lines around them, not the schema and config (2,700 lines before)."""
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("atribution:\n  proj_dim: 64\n")
    proc = run_snakemake("-n", "--configfile", str(overlay))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "unknown config key atribution (at the top level); did you mean attribution?" in output
    assert len(output.splitlines()) < 12, output
    assert "Failed validating" not in output and "On instance" not in output


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("nowhere", "dataset.path = '{path}': no such folder"),
        (
            "empty",
            "dataset.path = '{path}': no PNG or JPEG images (.png, .jpg, .jpeg) in the "
            "folder or below it",
        ),  # fmt: skip
    ],
)
def test_image_folder_path_is_checked_before_the_dag(
    tmp_path: Path, default_cfg, run_snakemake, folder: str, message: str
) -> None:
    """A missing folder or one without images stops the run naming dataset.path, before the
    DAG is built (before: a MissingInputException naming only the path, or a dry run that
    passed and a prepare_data job that failed)."""
    path = tmp_path / folder
    if folder == "empty":
        path.mkdir()
        (path / "notes.txt").write_text("no images here")
    cfg = copy.deepcopy(default_cfg)
    cfg["dataset"] = {"name": "mine", "source": "image_folder", "path": str(path),
                      "image_size": 16, "split_seed": 0, "channels": 1}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert message.format(path=path) in str(err.value)
    proc = run_snakemake("-n", "--configfile", str(write_config(tmp_path, cfg)))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message.format(path=path) in output, output
    assert "Building DAG" not in output and "MissingInputException" not in output, output
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "sub").mkdir()
    (tmp_path / "images" / "sub" / "a.PNG").write_bytes(b"")  # found below the folder
    cfg["dataset"]["path"] = str(tmp_path / "images")
    check_config(cfg)


def test_missing_pipeline_names_its_real_hub_id(monkeypatch, tmp_path: Path) -> None:
    """config/sd.yaml's pipeline.path is a local folder of SD v1.5: the message says how to
    fetch it from its hub id (it suggested the folder's path as a hub id before)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # empty
    with pytest.raises(ConfigError) as err:
        cached_folder("pretrained/stable-diffusion-v1-5", "pipeline.path")
    assert (
        "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 "
        "--local-dir pretrained/stable-diffusion-v1-5"
    ) in str(err.value)
    assert "download pretrained/" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        cached_folder("someone/their-model", "pipeline.path")
    assert (
        "huggingface-cli download someone/their-model --local-dir pretrained/their-model, "
        "then set pipeline.path: pretrained/their-model"
    ) in str(err.value)


def test_sd_config_without_its_snapshot_says_how_to_fetch_it(run_snakemake) -> None:
    proc = run_snakemake("-n", "--configfile", "config/sd.yaml")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5" in output


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["config/ci_t2i.yaml"], "config/digits_t2i.yaml, config/ci.yaml"),
        (["config/ci.yaml", "config/ci_t2i.yaml"], "config/digits_t2i.yaml, config/ci.yaml"),
        (["config/ci_sd.yaml"], "config/digits_sd.yaml, config/ci.yaml, config/ci_t2i.yaml"),
        (
            ["config/ci_t2i.yaml", "config/digits_t2i.yaml", "config/ci.yaml"],
            "config/digits_t2i.yaml, config/ci.yaml",
        ),  # fmt: skip
    ],
)
def test_partial_overlays_refuse_to_run_alone(
    repo: Path, monkeypatch, given: list[str], named: str
) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError) as err:
        check_stacking(given)
    assert f"is a partial overlay (its stack_on): it runs only on top of {named}" in str(err.value)
    assert "snakemake --configfile " in str(err.value)


def test_partial_overlays_run_on_their_stack(repo: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    check_stacking(["config/digits_t2i.yaml", "config/ci.yaml", "config/ci_t2i.yaml"])
    check_stacking(
        ["config/digits_sd.yaml", "config/ci.yaml", "config/ci_t2i.yaml", "config/ci_sd.yaml"]
    )
    check_stacking(["config/ci.yaml"])
    check_stacking([])


def test_snakemake_refuses_a_partial_overlay_alone(run_snakemake) -> None:
    """ci_t2i.yaml alone dry-ran "successfully" as the plain pixel DAG before."""
    proc = run_snakemake("-n", "--configfile", "config/ci_t2i.yaml")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        "config/ci_t2i.yaml is a partial overlay (its stack_on): it runs only on top of "
        "config/digits_t2i.yaml, config/ci.yaml" in output
    ), output
    assert "Job stats" not in output


def test_use_conda_without_conda_says_how_to_get_it() -> None:
    from stepattr.workflow.deployment import conda_missing

    message = conda_missing(True, "no-such-conda-frontend")
    assert message is not None and "Miniforge" in message and "conda-forge.org" in message
    assert "without --use-conda" in message
    assert conda_missing(False, "no-such-conda-frontend") is None
