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
# torch projector is used; a failed build only warns, for the same reason. Which projector
# produced the features is recorded beside every feature file and in scores/<method>/meta.json.
set -euo pipefail

py="${CONDA_PREFIX:?install-fast-jl must run inside the conda env}/bin/python"
if ! command -v nvcc >/dev/null 2>&1; then
    echo "install-fast-jl: no nvcc on PATH; fast_jl not installed (the torch projector is used)"
    exit 0
fi
if ! "$py" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)"; then
    echo "install-fast-jl: torch has no CUDA; fast_jl not installed (the torch projector is used)"
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
    echo "install-fast-jl: $setup does not look like fast_jl 0.1.3's; not installed" >&2
    exit 1
fi
echo "install-fast-jl: building fast_jl for TORCH_CUDA_ARCH_LIST=$arch"
if TORCH_CUDA_ARCH_LIST="$arch" "$py" -m pip install --no-deps --no-build-isolation --no-input \
    --disable-pip-version-check "$work/fast_jl-0.1.3"; then
    "$py" -c "import fast_jl; print('install-fast-jl: fast_jl from', fast_jl.__file__)"
else
    echo "install-fast-jl: WARNING: fast_jl failed to build; the torch projector is used" >&2
fi
