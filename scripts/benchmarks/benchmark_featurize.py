"""TRAK featurization speed: (example, timestep) pairs per second and peak memory.

Standalone (not a rule). For a config's UNet (random weights: speed does not depend on them)
and each projector asked for, featurizes random training images with the workflow's own
featurizer (stepattr.trak.features: vmap per-example gradients, then the projection; or, for
``factored``, stepattr.trak.factored: hooks in one batched forward+backward, no per-example
gradient; the "dim" column is its exact feature size) and reports pairs/s (examples x K
draws; also per CPU-second of the process, which a machine shared with other jobs distorts
less), the share of time spent projecting, and peak memory: the process's max RSS on CPU,
torch.cuda.max_memory_allocated on CUDA. Each projector runs in a fresh process so peaks do
not mix. A "forward_backward" row gives the ceiling: one batched forward+backward of the same
pairs (what training does), no per-example gradients.
Prints the figures and appends them to results/benchmarks/featurize.csv (+ one JSON per run).

    python scripts/benchmark_featurize.py --config config/config.yaml --projectors rademacher
    python scripts/benchmark_featurize.py --config config/config.yaml --projectors auto factored
    python scripts/benchmark_featurize.py --config config/cifar10.yaml --proj-dim 4096 \
        --projectors auto rademacher --examples 512
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stepattr.core.diffusion import Schedule, build_unet, eps_model, resolve_device
from stepattr.core.io import save_csv, save_json
from stepattr.core.output_functions import output_value, train_draws
from stepattr.trak.features import make_featurizer, train_features
from stepattr.workflow.configs import load_config


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedProjector:
    """Wraps a projector, adding up the wall time of its calls (a Projector itself)."""

    def __init__(self, inner: Any, device: torch.device) -> None:
        self.inner, self.device, self.seconds = inner, device, 0.0
        self.num_params, self.dim = inner.num_params, inner.dim

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        synchronize(self.device)
        start = time.perf_counter()
        out = self.inner.project(grads)
        synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return out

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def setup(cfg: dict, settings: dict) -> tuple[torch.nn.Module, torch.Tensor, torch.device]:
    torch.set_num_threads(settings["threads"])
    device = resolve_device(settings["device"])
    size = int(cfg["dataset"]["image_size"])
    channels = (
        1 if cfg["dataset"]["source"] == "mnist5k" else int(cfg["dataset"].get("channels", 3))
    )
    torch.manual_seed(0)
    unet = build_unet(cfg["model"], size, channels).to(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(settings["examples"], channels, size, size, generator=gen) * 2 - 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return unet, images, device


def run_featurize(cfg: dict, settings: dict, projector: str) -> dict[str, Any]:
    """One projector's row (runs in its own process)."""
    unet, images, device = setup(cfg, settings)
    schedule = Schedule.from_config(cfg["diffusion"])
    featurizer = make_featurizer(
        unet,
        settings["output_function"],
        schedule.alphas_cumprod,
        projector,
        settings["proj_dim"],
        seed=0,
        draws_per_pass=settings["draws_per_pass"],
        factored_expansion=settings["factored_expansion"],
    )
    timed = None
    if hasattr(featurizer, "projector"):  # the dense strategy: time the projection apart
        timed = featurizer.projector = TimedProjector(featurizer.projector, device)
    batch, draws = settings["batch_size"], settings["draws"]
    rss_before = peak_memory_mb(device)
    warm = images[:batch]
    train_features(featurizer, warm, np.arange(len(warm)), draws, 0, 1000, batch)  # warm-up
    if timed is not None:
        timed.seconds = 0.0
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    train_features(featurizer, images, np.arange(len(images)), draws, 0, 1000, batch)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "cpu_seconds": time.process_time() - cpu_start,
        "mode": "featurize",
        "projector": featurizer.describe().get("projector", projector),
        "dim": featurizer.dim,
        "seconds": seconds,
        "project_share": None if timed is None else timed.seconds / seconds,
        "peak_mem_mb": peak_memory_mb(device),
        "mem_before_mb": rss_before,
    }


def run_forward_backward(cfg: dict, settings: dict) -> dict[str, Any]:
    """The ceiling: batched forward+backward of the same pairs, one gradient per batch."""
    unet, images, device = setup(cfg, settings)
    alphas = Schedule.from_config(cfg["diffusion"]).alphas_cumprod
    batch, draws = settings["batch_size"], settings["draws"]

    def step(start: int) -> None:
        x0 = images[start : start + batch].to(device)
        ts, ns = train_draws(0, range(start, start + len(x0)), draws, x0.shape[1:], 1000)
        value = output_value(
            eps_model(unet), settings["output_function"], x0, ts.to(device), ns.to(device), alphas
        )
        unet.zero_grad(set_to_none=True)
        value.sum().backward()

    rss_before = peak_memory_mb(device)
    step(0)
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for offset in range(0, len(images), batch):
        step(offset)
    synchronize(device)
    return {
        "cpu_seconds": time.process_time() - cpu_start,
        "mode": "forward_backward",
        "projector": None,
        "dim": None,
        "seconds": time.perf_counter() - start,
        "project_share": None,
        "peak_mem_mb": peak_memory_mb(device),
        "mem_before_mb": rss_before,
    }


def run_influence(cfg: dict, settings: dict) -> list[dict[str, Any]]:
    """K-FAC / EK-FAC (stepattr.influence): fitting (two hooked passes over the examples'
    draws) and scoring (rotated gradients of the same examples against the config's number of
    target-step queries, for every (variant, damping) of ``influence``), timed apart."""
    from stepattr.influence.kfac import (
        RotatedGradients,
        fit_bases,
        inverse_weights,
        kronecker_layers,
        stream_scores,
    )

    unet, images, device = setup(cfg, settings)
    alphas = Schedule.from_config(cfg["diffusion"]).alphas_cumprod
    layers, uncovered = kronecker_layers(unet)
    batch, draws, indices = settings["batch_size"], settings["draws"], list(range(len(images)))
    rss_before = peak_memory_mb(device)
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    bases = fit_bases(unet, layers, images, indices, draws, 0, alphas, batch)
    synchronize(device)
    fit = {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "peak_mem_mb": peak_memory_mb(device),
        "mem_before_mb": rss_before,
    }
    rotated = RotatedGradients(
        unet, settings["output_function"], alphas, layers, bases, uncovered,
        settings["draws_per_pass"],
    )  # fmt: skip
    inf, sampling = cfg["influence"], cfg["sampling"]
    num_queries = (sampling["num_targets"] + sampling["num_validation"]) * len(sampling["grid"])
    queries = torch.randn(num_queries, rotated.dim, generator=torch.Generator().manual_seed(1))
    weights = inverse_weights(bases, [(v, d) for v in inf["methods"] for d in inf["dampings"]])
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    stream_scores(rotated, queries, weights, images, indices, draws, 0, 1000, batch)
    synchronize(device)
    score = {  # the process's peak: at least the fit's
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "peak_mem_mb": peak_memory_mb(device),
        "mem_before_mb": rss_before,
    }
    described = f"{len(weights)} (variant, damping) x {num_queries} queries"
    return [
        {**fit, "mode": "influence_fit", "projector": "kfac+ekfac factors", "dim": rotated.dim},
        {**score, "mode": "influence_score", "projector": described, "dim": rotated.dim},
    ]


def run_isolated(fn, *args) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument(
        "--projectors", nargs="+", default=["auto"], help="attribution.projector values to time"
    )
    parser.add_argument("--proj-dim", type=int, help="k (default: attribution.proj_dim)")
    parser.add_argument("--batch-size", type=int, help="default: attribution.batch_size")
    parser.add_argument("--draws", type=int, help="K (default: attribution.train_timesteps)")
    parser.add_argument(
        "--draws-per-pass", type=int, help="default: attribution.draws_per_pass (null = all K)"
    )
    parser.add_argument(
        "--factored-expansion", type=int, help="default: attribution.factored_expansion"
    )
    parser.add_argument("--examples", type=int, default=256, help="timed training examples")
    parser.add_argument("--output-function", default="loss", choices=["loss", "square_norm"])
    parser.add_argument("--device", help="default: the config's device")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--influence", action="store_true", help="also time K-FAC / EK-FAC fitting and scoring"
    )
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()

    cfg = load_config([args.config])  # the default, then the overlay
    att = cfg["attribution"]
    settings = {
        "proj_dim": args.proj_dim or int(att["proj_dim"]),
        "batch_size": args.batch_size or int(att["batch_size"]),
        "draws": args.draws or int(att["train_timesteps"]),
        "draws_per_pass": args.draws_per_pass or att.get("draws_per_pass"),
        "factored_expansion": args.factored_expansion or int(att.get("factored_expansion", 1)),
        "examples": args.examples,
        "output_function": args.output_function,
        "device": args.device or cfg["device"],
        "threads": args.threads,
    }
    device = resolve_device(settings["device"])
    size = int(cfg["dataset"]["image_size"])
    channels = (
        1 if cfg["dataset"]["source"] == "mnist5k" else int(cfg["dataset"].get("channels", 3))
    )
    params = sum(p.numel() for p in build_unet(cfg["model"], size, channels).parameters())
    common = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": args.config,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": settings["threads"],
        "torch": torch.__version__,
        "parameters": params,
        "image_size": size,
        **settings,
        "pairs": settings["examples"] * settings["draws"],
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    results = [run_isolated(run_forward_backward, cfg, settings)]
    results += [run_isolated(run_featurize, cfg, settings, name) for name in args.projectors]
    if args.influence:
        for row in run_isolated(run_influence, cfg, settings):
            results.append({"project_share": None, **row})
    records = []
    for result in results:
        record = {**common, **result}
        record["pairs_per_s"] = round(record["pairs"] / result["seconds"], 1)
        record["examples_per_s"] = round(settings["examples"] / result["seconds"], 2)
        record["pairs_per_cpu_s"] = round(record["pairs"] / result["cpu_seconds"], 1)
        for key in ("seconds", "cpu_seconds", "project_share", "peak_mem_mb", "mem_before_mb"):
            if record[key] is not None:
                record[key] = round(record[key], 3)
        records.append(record)
        print(
            f"{record['mode']:>16} {str(record['projector']):>18}: {record['pairs_per_s']:>9} "
            f"pairs/s ({record['pairs_per_cpu_s']} per CPU-second), "
            f"{record['examples_per_s']:>8} examples/s, projection share "
            f"{record['project_share']}, peak {record['peak_mem_mb']:.0f} MB "
            f"(before {record['mem_before_mb']:.0f} MB)"
        )
    out = Path(args.out)
    stamp = common["time"].replace(":", "").replace("+0000", "Z")
    save_json(out / f"featurize_{Path(args.config).stem}_{device.type}_{stamp}.json", records)
    table = out / "featurize.csv"
    frame = pd.DataFrame(records)
    save_csv(table, pd.concat([pd.read_csv(table), frame]) if table.exists() else frame)


if __name__ == "__main__":
    main()
