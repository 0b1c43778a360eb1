"""Measured runtimes of outputs: what rebuilding one figure or table from scratch costs.

After a finished run every job has a Snakemake benchmark file (wall seconds ``s`` and
``cpu_time``). For a target, ``snakemake -n --forceall <target>`` lists every job it needs from
scratch, with each job's benchmark path; summing those files gives the target's measured
compute. ``python -m stepattr.workflow.runtimes results/figures/lds.png ...`` prints one row per
target.

The wall-clock estimate for ``cores`` cores is the summed CPU time over ``cores``: jobs run one
thread each, so on an otherwise idle machine that is what the scheduler achieves while enough
jobs are ready (the critical path is shorter than that for every target of the default run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stepattr.core.io import read_benchmark
from stepattr.workflow.dry_run import dry_run


@dataclass(frozen=True)
class TargetRuntime:
    target: str
    jobs: int
    measured: int  # jobs with a benchmark file
    wall_s: float  # summed wall seconds of the jobs (as they ran, possibly in parallel)
    cpu_s: float  # summed CPU seconds
    own_s: float  # wall seconds of the job that writes the target


def benchmark_paths(dry_run_output: str) -> tuple[int, list[str]]:
    """(number of jobs, their benchmark files) from a dry run's job listing."""
    jobs, paths = 0, []
    for line in dry_run_output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ", "checkpoint ")) and stripped.endswith(":"):
            jobs += 1
        elif stripped.startswith("benchmark: "):
            paths.append(stripped.removeprefix("benchmark: "))
    return jobs, paths


def target_runtime(target: str, snakemake_args: Sequence[str] = ()) -> TargetRuntime:
    """Summed benchmarks of every job ``target`` needs from scratch."""
    jobs, paths = benchmark_paths(dry_run([*snakemake_args, "--", target], force="forceall"))
    found = [read_benchmark(p) for p in paths if Path(p).exists()]
    own = own_job_benchmark(target, snakemake_args)
    return TargetRuntime(
        target=target,
        jobs=jobs,
        measured=len(found),
        wall_s=sum(w for w, _ in found),
        cpu_s=sum(c for _, c in found),
        own_s=read_benchmark(own)[0] if own and Path(own).exists() else float("nan"),
    )


def own_job_benchmark(target: str, snakemake_args: Sequence[str]) -> str | None:
    """Benchmark file of the job that writes ``target`` (a dry run forcing only that job)."""
    try:
        paths = benchmark_paths(dry_run([*snakemake_args, "--", target], force="force"))[1]
    except RuntimeError:
        return None
    return paths[0] if paths else None


def markdown(rows: Sequence[TargetRuntime], cores: int) -> str:
    lines = [
        f"| target | jobs from scratch | CPU time | est. wall on {cores} cores | wall job-s "
        "| own job |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        note = "" if r.measured == r.jobs else f" ({r.measured} measured)"
        own = f"{r.own_s:.0f} s" if r.own_s == r.own_s else "no benchmark"
        lines.append(
            f"| `{r.target}` | {r.jobs}{note} | {r.cpu_s / 60:.1f} min | "
            f"{r.cpu_s / cores / 60:.1f} min | {r.wall_s:,.0f} | {own} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the measured from-scratch compute of each target of a finished run."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", action="append", default=[])
    args = parser.parse_args(argv)
    extra = [arg for f in args.configfile for arg in ("--configfile", f)]
    rows = [target_runtime(t, extra) for t in args.targets]
    sys.stdout.write(markdown(rows, args.cores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
