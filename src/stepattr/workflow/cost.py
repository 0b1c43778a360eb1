"""Compute estimates of the workflow's heavy jobs, from measured throughputs and a config.

One model serves two ends: the rules' ``runtime`` and ``mem_mb`` requests (``rules/common.smk``)
and the cost table of a whole config (``python -m stepattr.workflow.cost --configfile
config/cifar2.yaml``: job counts from a Snakemake dry run times the per-job estimate, in
device-hours per rule).

Work is counted in UNet "units": images x pixels x layers_per_block x the sum of the squared
block widths, which tracks the UNet's multiply-adds across the configs here. The throughputs:

- ``cpu``: measured on 2 CPU cores (one thread per job, mnist5k default UNet, 267k parameters):
  training ~600 images/s; vmap per-example gradients ~1.5x a training image, the torch
  projection ~40 GFLOP/s; factored featurization ~490 pairs/s (1.25x a training image). These
  are rates of jobs sharing the 2 cores inside a run; one job alone trains ~1,000 images/s.
  Shared-batch subset models (``kept`` = alpha of each batch) are counted at alpha of a step:
  alone on a core, a step of 64 of 128 images took 0.56x a full step (scripts/benchmarks/
  benchmark_training.py --batch-size 64 vs 128: 923 vs 1,027 images/s, ~15 ms per step
  that does not shrink with the batch), and an 800-step subset model of the default config
  took 70 s against 86 s estimated.
- ``cuda``: measured on one H100 for the 35.7M CIFAR-10 UNet (docs/method.md): bf16 training 1,630
  images/s (batch 128); vmap per-example gradients 157/s (10x a training image); fast_jl
  projection at k = 4,096: 129 gradients/s (3e13 multiply-add x 2 per second); a hook-based
  factored projection ~1,000 pairs/s (1.6x a training image).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepattr.core.names import DATASET_SOURCES
from stepattr.workflow.configs import model_side
from stepattr.workflow.dry_run import dry_run


@dataclass(frozen=True)
class Throughput:
    """Measured rates of one device kind."""

    train_units_per_s: float  # UNet units of forward+backward per second (training)
    grad_factor: float  # cost of one per-example gradient (vmap) in training images
    factored_factor: float  # cost of one factored featurization pair in training images
    project_flops: float  # projection multiply-adds x 2 per second
    measured_on: str


THROUGHPUT = {
    "cpu": Throughput(3.5e8, 1.5, 1.25, 4e10, "2 CPU cores (one thread per job)"),
    "cuda": Throughput(7e11, 10.0, 1.6, 3e13, "one NVIDIA H100 (docs/method.md measurements)"),
}
FORWARD_FRACTION = 1 / 3  # a forward pass costs about a third of a training step's image


def unet_work(cfg: Mapping[str, Any], images: float) -> float:
    """UNet units of ``images`` forward+backward passes at the configured size and widths."""
    m, size = cfg["model"], model_side(cfg)
    return images * size**2 * m["layers_per_block"] * sum(c * c for c in m["block_out_channels"])


def num_unet_parameters(cfg: Mapping[str, Any]) -> int:
    """Approximate parameters of the configured UNet, 60 (layers + 1) sum c^2: within ~10% for
    the default 16x16 and the CIFAR-10 UNets (no torch import, for resource requests)."""
    m = cfg["model"]
    return 60 * (m["layers_per_block"] + 1) * sum(c * c for c in m["block_out_channels"])


def attributed_parameters(cfg: Mapping[str, Any]) -> int:
    """Parameters the features are gradients of: the UNet's, or for stable_diffusion its LoRA
    adapters. Each transformer block of width c (``layers_per_block`` down and one more up at
    every attention level, one in the mid block) has self-attention q, k, v, out (c -> c) and
    cross-attention q, out (c -> c) and k, v (text width d -> c): rank x (14 c + 2 d)
    adapter parameters. Counts the attention projections only (SD v1.5 at rank 4: 0.80M, as
    diffusers reports); adapters on other layers are not counted."""
    if cfg.get("family", "pixel") != "stable_diffusion":
        return num_unet_parameters(cfg)
    m, d = cfg["model"], int(cfg["text_encoder"]["width"])
    chans, layers = m["block_out_channels"], m["layers_per_block"]
    widths = [chans[i] for i in m["attention_levels"]] * (2 * layers + 1) + [chans[-1]]
    return int(cfg["pipeline"]["lora"]["rank"]) * sum(14 * c + 2 * d for c in widths)


def train_size(cfg: Mapping[str, Any]) -> int:
    """Training images: max_train, else mnist5k's 4,500, COCO's 118,287 captioned train2017
    images less the test fraction, else CIFAR-10's 50,000 (an estimate for image folders,
    whose size is known only once the data are prepared)."""
    ds = cfg["dataset"]
    if not ds.get("max_train") and ds["source"] == "coco":
        return round(118287 * (1 - ds.get("test_fraction", 0.1)))
    return ds.get("max_train") or (4500 if ds["source"] == "mnist5k" else 50000)


def train_seconds(cfg: Mapping[str, Any], steps: int, device: str, kept: float = 1.0) -> float:
    """One training job of ``steps`` steps; ``kept``: fraction of each batch trained on
    (shared-batch subset models keep about subsets.alpha of it)."""
    images = steps * cfg["train"]["batch_size"] * kept
    return unet_work(cfg, images) / THROUGHPUT[device].train_units_per_s


def forward_seconds(cfg: Mapping[str, Any], passes: float, device: str) -> float:
    """``passes`` UNet forward passes of one image (sampling, completions, f_t)."""
    work = unet_work(cfg, passes) * FORWARD_FRACTION
    return work / THROUGHPUT[device].train_units_per_s


def featurize_seconds(
    cfg: Mapping[str, Any], examples: int, draws: int, device: str, projector: str
) -> float:
    """Features of ``examples`` examples with ``draws`` (timestep, noise) draws each: dense
    projectors pay per-example gradients plus one projection per example; factored pays a
    hooked forward+backward per draw."""
    rate = THROUGHPUT[device]
    if projector == "factored":
        return unet_work(cfg, examples * draws) * rate.factored_factor / rate.train_units_per_s
    grads = unet_work(cfg, examples * draws) * rate.grad_factor / rate.train_units_per_s
    project = examples * 2 * attributed_parameters(cfg) * cfg["attribution"]["proj_dim"]
    return grads + project / rate.project_flops


# K-FAC work per (example, draw) row in training images (CPU, default UNet, measured in a
# contended run: fitting ~0.029 s per row for both passes, dominated by the covariance of
# the unfolded conv inputs; rotated gradients ~3x a factored featurization). The GPU has not
# been measured: the same ratios are assumed.
KFAC_FIT_FACTOR = 17.0
KFAC_ROTATED_FACTOR = 4.0


def influence_seconds(cfg: Mapping[str, Any], rule: str, device: str) -> float:
    """K-FAC fitting (two hooked passes over the fit examples' draws) or one model's influence
    scores (rotated gradients of the targets' and the training draws, then one
    ``(Q, p) @ (p, n)`` product per (variant, damping))."""
    att, inf = cfg["attribution"], cfg["influence"]
    rate = THROUGHPUT[device]
    n = train_size(cfg)
    if rule == "fit_influence_factors":
        rows = min(n, inf["fit_examples"] or n) * (inf["fit_draws"] or att["train_timesteps"])
        return unet_work(cfg, rows) * KFAC_FIT_FACTOR / rate.train_units_per_s
    queries = sum(set_sizes(cfg).values()) * len(cfg["sampling"]["grid"])
    rows = queries * att["target_resamples"] + n * att["train_timesteps"]
    hooked = unet_work(cfg, rows) * KFAC_ROTATED_FACTOR / rate.train_units_per_s
    combos = len(inf["methods"]) * len(inf["dampings"])
    product = 2 * combos * queries * n * num_unet_parameters(cfg)
    return hooked + product / rate.project_flops


def completion_passes(cfg: Mapping[str, Any], starts: list[int], completions: int) -> int:
    """Forward passes of ``completions`` completions from each step in ``starts`` to 0."""
    from stepattr.core.diffusion import Schedule

    schedule = Schedule.from_config(cfg["diffusion"])
    steps = cfg["transitions"]["completion_steps"]
    return completions * sum(len(schedule.inference_timesteps(steps, start=t)) for t in starts)


def pipeline_transition_passes(cfg: Mapping[str, Any]) -> float:
    """UNet image passes of rule pipeline_transitions, at the training latents' size: every
    trajectory, then N completions from each grid step's scheduler step to the end (twice the
    passes with guidance), times the area ratio of the pipeline's own latents (its UNet's
    ``sample_size``, e.g. SD v1.5's 64 against 32 for 256x256 training images)."""
    tr = cfg["pipeline"]["transitions"]
    steps, total = int(tr["inference_steps"]), int(cfg["diffusion"]["num_train_timesteps"])
    left = sum(max(1, round(steps * int(t) / total)) for t in cfg["sampling"]["grid"])
    guided = 1 if float(tr["guidance"]) == 1.0 else 2
    per_trajectory = steps + int(tr["completions"]) * left
    passes = len(tr["prompts"]) * int(tr["trajectories"]) * per_trajectory * guided
    unet = Path(str(cfg["pipeline"]["path"])) / "unet" / "config.json"
    if not cfg["pipeline"]["path"] or not unet.is_file():
        return float(passes)
    sample_size = int(json.loads(unet.read_text()).get("sample_size", model_side(cfg)))
    return passes * (sample_size / model_side(cfg)) ** 2


# Host memory (MB) of the heavy jobs: the rules' ``mem_mb`` requests (before ``by_attempt``
# doubles them on a retry).


def split_mem_mb(cfg: Mapping[str, Any], base: int) -> int:
    """A job that holds the whole training split: ``base`` MB, or what preparing the configured
    source takes where that is more (COCO's ~116k images at 128x128: 16 GB)."""
    return max(base, DATASET_SOURCES[cfg["dataset"]["source"]]["mem_mb"])


def torch_mem_mb(cfg: Mapping[str, Any], batch_size: int) -> int:
    """A UNet job: the data and torch itself, plus activations when on CPU (at the side the
    UNet sees: the latent's for the text-to-image family)."""
    activations = batch_size * model_side(cfg) ** 2 * max(cfg["model"]["block_out_channels"])
    return int(2000 + activations * 160 / 1e6)


def featurize_mem_mb(cfg: Mapping[str, Any], gpu: bool) -> int:
    """A featurization job: torch, per-example gradients (twice: per parameter, then
    flattened), activations of K draws per example, and the cached CPU projection matrix."""
    att = cfg["attribution"]
    p, batch = num_unet_parameters(cfg), att["batch_size"]
    draws = att.get("draws_per_pass") or max(att["train_timesteps"], att["target_resamples"])
    matrix = 0 if gpu else min(p * att["proj_dim"] * 4, 2**32)
    # x1.25: the default config measured a 5.2 GB peak against this estimate's 5.2 GB
    return int(1.25 * (torch_mem_mb(cfg, batch * draws) + (8 * batch * p + matrix) / 1e6))


def gather_mem_mb(cfg: Mapping[str, Any]) -> int:
    """Gathering a model's train shards: the shards and the result, float32."""
    return int(1000 + 2 * 4 * train_size(cfg) * cfg["attribution"]["proj_dim"] / 1e6)


def score_mem_mb(cfg: Mapping[str, Any]) -> int:
    """A score job: float64 kernels, target features and the score array."""
    k, n = cfg["attribution"]["proj_dim"], train_size(cfg)
    m = sum(set_sizes(cfg).values()) * len(cfg["sampling"]["grid"])
    return int(2000 + (3 * 8 * k * k + 8 * (m + 8192) * k + 2 * 4 * m * n) / 1e6)


def influence_mem_mb(cfg: Mapping[str, Any]) -> int:
    """An influence scoring job: the rotated target gradients (targets x steps x p, float32)
    and one batch of training gradients per (variant, damping), plus torch."""
    queries = sum(set_sizes(cfg).values()) * len(cfg["sampling"]["grid"])
    p, batch = num_unet_parameters(cfg), cfg["influence"]["batch_size"]
    return int(torch_mem_mb(cfg, batch) + 4 * p * (2 * queries + 3 * batch) / 1e6)


def set_sizes(cfg: Mapping[str, Any]) -> dict[str, int]:
    return {
        "generated": cfg["sampling"]["num_targets"],
        "validation": cfg["sampling"]["num_validation"],
    }


def job_seconds(
    cfg: Mapping[str, Any], rule: str, device: str, projector: str | None = None
) -> float | None:
    """Estimated seconds of one job of ``rule`` (the mean over its jobs where they differ);
    None for rules too light to model (tables, figures, data preparation). ``projector``:
    of a featurization job (default: the mean over the run's projectors)."""
    if projector is None and rule in ("featurize_train", "featurize_targets"):
        from stepattr.core.names import attribution_projectors

        projectors = attribution_projectors(cfg["attribution"])
        costs = [job_seconds(cfg, rule, device, name) for name in projectors]
        return sum(costs) / len(costs)
    att, sampling, cf = cfg["attribution"], cfg["sampling"], cfg["counterfactual"]
    sets = set_sizes(cfg)
    mean_set = sum(sets.values()) / max(1, sum(1 for n in sets.values() if n))
    grid = len(sampling["grid"])
    projector = projector or att["projector"]
    cf_steps = cf["train_steps"] or cfg["train"]["steps"]
    if rule == "train":
        return train_seconds(cfg, cfg["train"]["steps"], device)
    if rule == "retrain":
        sub = cfg["subsets"]
        kept = sub["alpha"] if sub.get("shared_batches", True) else 1.0
        return train_seconds(cfg, sub["train_steps"] or cfg["train"]["steps"], device, kept)
    if rule == "retrain_removed":
        return train_seconds(cfg, cf_steps, device)
    if rule == "train_counterfactual_reference":
        return train_seconds(cfg, cf_steps, device)
    if rule == "featurize_train":
        examples = -(-train_size(cfg) // att["shards"])
        return featurize_seconds(cfg, examples, att["train_timesteps"], device, projector)
    if rule == "featurize_targets":
        examples = int(mean_set * grid)
        return featurize_seconds(cfg, examples, att["target_resamples"], device, projector)
    if rule in ("fit_influence_factors", "influence_model_scores"):
        return influence_seconds(cfg, rule, device)
    if rule == "patch_features":
        fig = cfg["figures"]
        patches = len(fig["patches"]) + (4 if fig["quadrants"] else 0)
        examples = len(fig["patch_targets"]) * patches * len(fig["patch_steps"])
        return featurize_seconds(cfg, examples, att["target_resamples"], device, projector)
    if rule in ("sample_targets", "sample_preview"):
        count = sampling["num_targets"] if rule == "sample_targets" else sampling["num_preview"]
        return forward_seconds(cfg, count * sampling.get("inference_steps", 1000), device)
    if rule == "feature_curves":
        completions = cfg["transitions"]["completions"]
        passes = mean_set * completion_passes(cfg, list(sampling["grid"]), completions)
        return forward_seconds(cfg, passes, device)
    if rule == "pipeline_transitions":
        return forward_seconds(cfg, pipeline_transition_passes(cfg), device)
    if rule == "eval_subset_outputs":
        resamples = cfg["lds"].get("target_resamples") or att["target_resamples"]
        passes = sum(sets.values()) * (grid * resamples + cfg["lds"]["dtrak_draws"])
        return forward_seconds(cfg, passes, device)
    if rule == "counterfactual_eval":
        # two completion modes per pair; pairs are spread over the evaluated models
        starts = [sampling["grid"][0]]
        return forward_seconds(cfg, 2 * completion_passes(cfg, starts, cf["completions"]), device)
    return None


JOB_STATS = re.compile(r"^job\s+count\s*$")


def parse_job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table of ``snakemake -n``."""
    lines = dry_run_output.splitlines()
    for i, line in enumerate(lines):
        if JOB_STATS.match(line.strip()):
            counts: dict[str, int] = {}
            for row in lines[i + 2 :]:
                parts = row.split()
                if len(parts) != 2 or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            return counts
    raise ValueError("no 'Job stats' table in the dry-run output")


def cost_table(cfg: Mapping[str, Any], counts: Mapping[str, int], device: str) -> list[dict]:
    """Rows (rule, jobs, hours per job, hours) for every modelled rule, heaviest first."""
    rows = []
    for rule, jobs in counts.items():
        seconds = job_seconds(cfg, rule, device)
        if seconds is not None:
            rows.append(
                {"rule": rule, "jobs": jobs, "hours_per_job": seconds / 3600,
                 "hours": jobs * seconds / 3600}
            )  # fmt: skip
    return sorted(rows, key=lambda row: -row["hours"])


def markdown(rows: list[dict], device: str, configfile: str) -> str:
    total = sum(row["hours"] for row in rows)
    unit = "GPU-h" if device == "cuda" else "CPU-h"
    lines = [
        f"Estimated compute of `{configfile}` on {THROUGHPUT[device].measured_on} "
        f"(rates: stepattr.workflow.cost; job counts: snakemake -n)",
        "",
        f"| rule | jobs | {unit} per job | {unit} |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['rule']} | {r['jobs']} | {r['hours_per_job']:.3g} | {r['hours']:.3g} |" for r in rows
    ]
    lines.append(f"| **total** | {sum(r['jobs'] for r in rows)} | | **{total:.3g}** |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the cost table of a config (runs ``snakemake -n`` in the working directory)."""
    import yaml

    from stepattr.workflow.configs import load_config, merge

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--device", choices=sorted(THROUGHPUT), default="cuda")
    parser.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="values passed on to snakemake --config (e.g. a pipeline folder for config/sd.yaml)",
    )
    args = parser.parse_args(argv)
    cfg = load_config([args.configfile])
    for item in args.config:  # as Snakemake reads them: a top-level key, a YAML value
        key, _, value = item.partition("=")
        cfg = merge(cfg, {key: yaml.safe_load(value)})
    extra = ["--config", *args.config] if args.config else []
    try:
        listing = dry_run(["--configfile", args.configfile, *extra])
    except RuntimeError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    counts = parse_job_counts(listing)
    sys.stdout.write(markdown(cost_table(cfg, counts, args.device), args.device, args.configfile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
