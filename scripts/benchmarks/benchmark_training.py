"""Training img/s and sampling steps/s of a config's UNet on this machine's device.

Standalone (not a rule): runs the workflow's own training step (stepattr.training.recipe) and
ancestral sampler (stepattr.core.diffusion.sample) on random images of the config's shape, prints
the figures and appends them to results/benchmarks/training.csv (+ one JSON per run).

    python scripts/benchmark_training.py --config config/config.yaml --threads 1
    python scripts/benchmark_training.py --config config/cifar10.yaml --steps 200 --compile true
    python scripts/benchmark_training.py --config config/config.yaml --subset-groups 1 2 4

``--subset-groups``: subset-model training (shared batches, subsets.alpha) with G models per
job (stepattr.training.batched), every G timed in the same process, round-robin, so that the
comparison shares the machine's state; reports subset model-steps per wall and per CPU
second and the speed-up over G = 1 (results/benchmarks/subset_training.csv).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stepattr.core.diffusion import Schedule, resolve_device, sample
from stepattr.core.images import to_model_space
from stepattr.core.io import save_csv, save_json
from stepattr.training.recipe import DiffusionTrainer, TrainSettings, use_compile
from stepattr.workflow.configs import load_config


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(trainer: DiffusionTrainer, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall second and per CPU second of this process over ``steps`` timed steps.

    The CPU-second figure is what a shared (oversubscribed) machine still measures fairly.
    """
    for _ in range(warmup):
        trainer.train_step()
    synchronize(trainer.device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.train_step()
    synchronize(trainer.device)
    images = steps * trainer.order.batch_size
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def time_sampling(unet: torch.nn.Module, schedule: Schedule, batch: int, steps: int) -> float:
    """Ancestral denoising steps per second for a batch of ``batch`` images."""
    cfg = unet.config
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    timesteps = schedule.inference_timesteps(schedule.num_train_timesteps)
    generator = torch.Generator().manual_seed(0)
    sample(unet, schedule, x, timesteps[:2], generator)  # warm-up
    synchronize(next(unet.parameters()).device)
    start = time.perf_counter()
    sample(unet, schedule, x, timesteps[:steps], generator)
    synchronize(next(unet.parameters()).device)
    return steps / (time.perf_counter() - start)


def time_subset_groups(
    images: torch.Tensor,
    cfg: dict,
    train_cfg: TrainSettings,
    device: torch.device,
    groups: list[int],
    steps: int,
    warmup: int,
    rounds: int = 3,
) -> list[dict]:
    """Model-steps per second of G shared-batch subset models per job, for each G in
    ``groups``, measured round-robin over ``rounds`` rounds (median per G)."""
    from stepattr.training.batched import BatchedDiffusionTrainer

    schedule = Schedule.from_config(cfg["diffusion"])
    rng = np.random.default_rng(0)
    alpha = float(cfg["subsets"]["alpha"])
    trainers = {}
    for g in groups:
        keep = torch.from_numpy(rng.random((g, len(images))) < alpha)
        if g == 1:
            trainers[g] = DiffusionTrainer(
                images, cfg["model"], train_cfg, schedule, 0, device, keep[0]
            )
        else:
            trainers[g] = BatchedDiffusionTrainer(
                images, cfg["model"], train_cfg, schedule, 0, device, keep
            )
    timings: dict[int, list[tuple[float, float]]] = {g: [] for g in groups}
    for _ in range(rounds):
        for g, trainer in trainers.items():
            for _ in range(warmup):
                trainer.train_step()
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                trainer.train_step()
            synchronize(device)
            timings[g].append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = []
    for g in groups:
        wall = float(np.median([w for w, _ in timings[g]]))
        cpu = float(np.median([c for _, c in timings[g]]))
        rows.append(
            {
                "group_size": g,
                "model_steps_per_s": round(g * steps / wall, 2),
                "model_steps_per_cpu_s": round(g * steps / cpu, 2),
            }
        )
    base = rows[0]
    for row in rows:
        row["speedup_wall"] = round(row["model_steps_per_s"] / base["model_steps_per_s"], 3)
        row["speedup_cpu"] = round(row["model_steps_per_cpu_s"] / base["model_steps_per_cpu_s"], 3)
    return rows


def append_rows(table: Path, rows: list[dict]) -> None:
    """Append rows to a CSV of benchmark records (created on first use)."""
    frame = pd.DataFrame(rows)
    if table.exists():
        frame = pd.concat([pd.read_csv(table), frame])
    save_csv(table, frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--steps", type=int, default=50, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--sample-steps", type=int, default=50, help="timed sampling steps")
    parser.add_argument("--sample-batch", type=int, help="default: sampling.num_targets")
    parser.add_argument("--batch-size", type=int, help="default: train.batch_size")
    parser.add_argument("--device", help="default: the config's device")
    parser.add_argument("--threads", type=int, help="default: train.threads")
    parser.add_argument(
        "--compile", choices=["auto", "true", "false"], help="default: train.compile"
    )
    parser.add_argument(
        "--subset-groups", type=int, nargs="+", help="time G subset models per job for each G"
    )
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()

    cfg = load_config([args.config])  # the default, then the overlay
    section = dict(cfg["train"])
    if args.batch_size:
        section["batch_size"] = args.batch_size
    if args.compile:
        section["compile"] = {"true": True, "false": False}.get(args.compile, "auto")
    train_cfg = TrainSettings.from_config(section)
    threads = args.threads or train_cfg.threads
    torch.set_num_threads(threads)
    device = resolve_device(args.device or cfg["device"])
    size, channels = int(cfg["dataset"]["image_size"]), int(cfg["dataset"].get("channels", 3))
    if cfg["dataset"]["source"] == "mnist5k":
        channels = 1
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(4 * train_cfg.batch_size, 512), channels, size, size))
    schedule = Schedule.from_config(cfg["diffusion"])
    if args.subset_groups:
        groups = sorted(set(args.subset_groups) | {1})
        rows = time_subset_groups(
            to_model_space(images.astype(np.uint8)), cfg, train_cfg, device, groups,
            args.steps, args.warmup,
        )  # fmt: skip
        common = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": args.config, "device": str(device), "threads": threads,
            "batch_size": train_cfg.batch_size, "alpha": cfg["subsets"]["alpha"],
            "steps_timed": args.steps, "load_average_1min": round(os.getloadavg()[0], 2),
        }  # fmt: skip
        rows = [common | row for row in rows]
        print(pd.DataFrame(rows).to_string(index=False))
        append_rows(Path(args.out) / "subset_training.csv", rows)
        return
    trainer = DiffusionTrainer(
        to_model_space(images.astype(np.uint8)), cfg["model"], train_cfg, schedule, 0, device
    )
    train_img_s, train_img_cpu_s = time_training(trainer, args.steps, args.warmup)
    sample_batch = args.sample_batch or int(cfg["sampling"]["num_targets"])
    unet = trainer.final_model().eval()
    sample_steps_s = time_sampling(unet, schedule, sample_batch, args.sample_steps)

    record = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": args.config,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": threads,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in trainer.unet.parameters()),
        "image_size": size,
        "batch_size": train_cfg.batch_size,
        "compile": use_compile(train_cfg.compile, device),
        "bf16_autocast": device.type == "cuda",
        "train_steps_timed": args.steps,
        "train_img_per_s": round(train_img_s, 1),
        "train_img_per_cpu_s": round(train_img_cpu_s, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "sample_batch": sample_batch,
        "sample_steps_timed": args.sample_steps,
        "sample_steps_per_s": round(sample_steps_s, 2),
        "sample_img_steps_per_s": round(sample_steps_s * sample_batch, 1),
    }
    for key, value in record.items():
        print(f"{key:>22}: {value}")
    out = Path(args.out)
    stamp = record["time"].replace(":", "").replace("+0000", "Z")
    save_json(out / f"training_{Path(args.config).stem}_{device.type}_{stamp}.json", record)
    append_rows(out / "training.csv", [record])


if __name__ == "__main__":
    main()
