#!/usr/bin/env bash
# Post-deploy script of every env here (envs/<name>.post-deploy.sh link to this file):
# Snakemake runs it once, inside the freshly created env, after `--sdm conda` creates it.
#
# Snakemake runs a *copy* of this script (.snakemake/conda/<hash>.post-deploy.sh), from its
# working directory (the --directory, default where snakemake was started), so neither $0 nor
# the working directory is guaranteed to be the repository. The repository is STEPATTR_ROOT
# when set, else the nearest folder at or above the working directory whose pyproject.toml
# names the project "stepattr".
#
# In the env that has torch (envs/torch.yaml) it then runs install-fast-jl.sh: MadryLab's fast_jl
# kernels for the `auto` projector where the machine has nvcc and the env a CUDA torch; where
# not, that script records why in the env (the featurize jobs quote it when they fall back).
#
# The package goes in editable and without dependencies (the env file provides them; pip and
# setuptools come from the env, so nothing is fetched). An env shared between checkouts via
# --conda-prefix imports stepattr from the checkout that created it.
set -euo pipefail

root="${STEPATTR_ROOT:-}"
if [ -z "$root" ]; then
    dir="$PWD"
    while [ "$dir" != "/" ]; do
        if [ -f "$dir/pyproject.toml" ] && grep -q '^name = "stepattr"' "$dir/pyproject.toml"; then
            root="$dir"
            break
        fi
        dir="$(dirname "$dir")"
    done
fi
if [ -z "$root" ] || [ ! -d "$root/src/stepattr" ]; then
    echo "post-deploy: cannot find the stepattr repository at or above $PWD;" \
        "set STEPATTR_ROOT to the checkout that holds pyproject.toml" >&2
    exit 1
fi

"${CONDA_PREFIX:?post-deploy must run inside the conda env}/bin/python" -m pip install \
    --no-deps --no-build-isolation --no-input --disable-pip-version-check -e "$root"
"$CONDA_PREFIX/bin/python" -c "import stepattr; print('stepattr', stepattr.__version__, 'from', stepattr.__file__)"
if "$CONDA_PREFIX/bin/python" -c "import torch" >/dev/null 2>&1; then
    bash "$root/envs/install-fast-jl.sh" ||
        echo "post-deploy: install-fast-jl.sh failed (exit $?); the torch projector is used" >&2
fi
