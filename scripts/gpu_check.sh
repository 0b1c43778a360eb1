#!/usr/bin/env bash
# One prepared call on a GPU machine (one H100/H200, CUDA 13, torch preinstalled), at most
# ~8 minutes: install the carried wheels, build fast_jl for the visible GPU, run the ci DAG with
# device cuda, and benchmark batched subset retraining and featurization (dense vmap + fast_jl,
# factored) on the 35.7M-parameter CIFAR-10 UNet. Everything lands in one JSON,
# $OUT/gpu_check.json (OUT defaults to results/benchmarks/gpu_check), with each step's log.
#
#   Here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                    --implementation cp --platform manylinux_2_28_x86_64 \
#                    --platform manylinux2014_x86_64 -d .whl <every package of pyproject's
#                    dependencies that the device's KINDS.md does not list>
#                python3 -m pip download --no-deps --no-binary=:all: -d .whl fast_jl==0.1.3
#   There:       bash scripts/gpu_check.sh        (the device tool: carry [".whl"])
#   Here, to try the steps on the CPU (no fast_jl, tiny sizes):  DEVICE=cpu bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/benchmarks/gpu_check}"
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
status="$OUT/steps.tsv"
: >"$status"

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, record rc and seconds
    local name="$1"
    shift
    local start=$SECONDS
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$status"
    echo "gpu_check: $name rc=$rc ($((SECONDS - start)) s)"
    return 0
}

install_wheels() {
    [ -d .whl ] || { echo "no .whl folder: using what is installed"; return 0; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
}

build_fast_jl() {
    local sdist
    sdist="$(ls .whl/fast_jl-*.tar.gz 2>/dev/null | head -1)"
    [ -n "$sdist" ] || { echo "no fast_jl sdist in .whl"; return 1; }
    local work
    work="$(mktemp -d)"
    tar -xzf "$sdist" -C "$work"
    # fast_jl 0.1.3 hard-codes 7.0+PTX, which CUDA 13 refuses: build for the visible GPU
    sed -i 's/^environ\[.TORCH_CUDA_ARCH_LIST.\] *= *.*$/environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")/' \
        "$work"/fast_jl-*/setup.py
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" "$PY" -m pip install -q --no-deps \
        --no-build-isolation --target /tmp/site "$work"/fast_jl-*/ &&
        "$PY" -c "import fast_jl; print('fast_jl', fast_jl.__file__)"
}

ci_dag() {
    local dir
    dir="$(mktemp -d)/ci"
    "$PY" -m snakemake --cores 8 --configfile config/ci.yaml \
        --config device="$DEVICE" outdir="$dir" && cp "$dir/tables/lds.md" "$OUT/ci_lds.md"
}

bench_training() {  # batched subset retraining against one model per job
    local cfg=config/cifar10.yaml steps=20
    [ "$DEVICE" = cpu ] && cfg=config/ci.yaml steps=3
    "$PY" scripts/benchmarks/benchmark_training.py --config "$cfg" --device "$DEVICE" \
        --steps "$steps" --warmup 3 --subset-groups 1 4 8 --out "$OUT"
}

bench_featurize() {  # dense vmap (fast_jl where it built) and factored projection
    local cfg=config/cifar10.yaml examples=256
    [ "$DEVICE" = cpu ] && cfg=config/ci.yaml examples=16
    "$PY" scripts/benchmarks/benchmark_featurize.py --config "$cfg" --device "$DEVICE" \
        --examples "$examples" --projectors auto factored --out "$OUT"
}

step install_wheels install_wheels
export PYTHONPATH="/tmp/site:$PYTHONPATH"
[ "$DEVICE" = cuda ] && step build_fast_jl build_fast_jl
step ci_dag ci_dag
step bench_training bench_training
step bench_featurize bench_featurize

"$PY" - "$OUT" <<'EOF'
"""Gather the steps' status and the benchmark tables into one JSON."""
import json
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])
steps = pd.read_csv(out / "steps.tsv", sep="\t", names=["step", "rc", "seconds"])
record = {"steps": steps.to_dict("records")}
for name in ("subset_training", "featurize"):
    table = out / f"{name}.csv"
    record[name] = pd.read_csv(table).to_dict("records") if table.exists() else None
try:
    import torch

    record["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    record["torch"] = torch.__version__
except ImportError:
    record["device"] = record["torch"] = None
(out / "gpu_check.json").write_text(json.dumps(record, indent=1, default=str))
print(json.dumps(record["steps"]))
EOF
