#!/usr/bin/env bash
# fast_jl (MadryLab's CUDA random-projection kernels) into the current conda env, for the
# `auto` projector (stepattr.trak.projectors): run inside the torch env after stepattr is
# installed, e.g. from torch.post-deploy.sh.
#
# fast_jl 0.1.3's setup.py hard-codes TORCH_CUDA_ARCH_LIST=7.0+PTX, which CUDA >= 13 refuses,
# and it imports torch at build time, so a stock `pip install fast-jl` fails. Here the sdist is
# fetched with pip, its setup.py patched to honour TORCH_CUDA_ARCH_LIST (default: the visible
# GPU's compute capability, else "8.0;9.0+PTX"), and built against the env's torch
# (--no-build-isolation). Without nvcc or a CUDA build of torch nothing is installed and the
# torch projector is used; a failed build only warns, for the same reason. Each outcome is one
# line in $CONDA_PREFIX/etc/stepattr-fast-jl.txt, which a featurize job whose `auto` projector
# falls back to the torch one on a GPU quotes in its log (stepattr.trak.projectors.auto_choice;
# Snakemake keeps no output of a post-deploy script that succeeds). Which projector produced
# the features is recorded beside every feature file and in scores/<method>/meta.json.
# The torch env's post-deploy (install-stepattr.sh) runs this; in a venv, run it by hand with
# CONDA_PREFIX set to the venv.
set -euo pipefail

py="${CONDA_PREFIX:?install-fast-jl must run inside the conda env}/bin/python"
record="$CONDA_PREFIX/etc/stepattr-fast-jl.txt"
mkdir -p "$(dirname "$record")"
say() {  # say MESSAGE: to the output and, as the env's record, to $record
    echo "install-fast-jl: $1"
    echo "$1" >"$record"
}
trap 'say "not installed: the install step failed (exit $?) before the build; the torch projector is used"' ERR
nvcc="${NVCC:-nvcc}"  # the CUDA compiler (NVCC names another one)
if ! command -v "$nvcc" >/dev/null 2>&1; then
    say "not installed: no $nvcc on PATH when the env was created (the torch projector is used)"
    exit 0
fi
if ! "$py" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)"; then
    say "not installed: the env's torch has no CUDA (the torch projector is used)"
    exit 0
fi
arch="${TORCH_CUDA_ARCH_LIST:-$("$py" -c '
import torch
if torch.cuda.is_available():
    print("%d.%d" % torch.cuda.get_device_capability())
else:
    print("8.0;9.0+PTX")
')}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" -m pip download --no-deps --no-build-isolation --no-input --disable-pip-version-check \
    fast_jl==0.1.3 -d "$work"
tar -xzf "$work/fast_jl-0.1.3.tar.gz" -C "$work"
setup="$work/fast_jl-0.1.3/setup.py"
sed -i 's/^environ\[.TORCH_CUDA_ARCH_LIST.\] *= *.*$/environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.0+PTX")/' "$setup"
if ! grep -q '^environ.setdefault("TORCH_CUDA_ARCH_LIST"' "$setup"; then
    trap - ERR
    say "not installed: $setup does not look like fast_jl 0.1.3's (the torch projector is used)" >&2
    exit 1
fi
echo "install-fast-jl: building fast_jl for TORCH_CUDA_ARCH_LIST=$arch"
trap - ERR
if TORCH_CUDA_ARCH_LIST="$arch" "$py" -m pip install --no-deps --no-build-isolation --no-input \
    --disable-pip-version-check "$work/fast_jl-0.1.3" &&
    "$py" -c "import fast_jl; print('install-fast-jl: fast_jl from', fast_jl.__file__)"; then
    say "installed for TORCH_CUDA_ARCH_LIST=$arch"
else
    say "WARNING: fast_jl failed to build for TORCH_CUDA_ARCH_LIST=$arch (the torch projector is used)" >&2
fi
