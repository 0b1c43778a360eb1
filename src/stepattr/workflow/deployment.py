"""How jobs get their software: the venv the workflow runs in, or one conda env per rule
family (``--use-conda``, ``--sdm conda``). Torch-free: rules/common.smk calls it at parse time.
"""

from __future__ import annotations

import shutil

#: where a user gets conda (conda-forge's installer, the channel the envs/*.yaml use)
MINIFORGE = "https://conda-forge.org/download/"


def conda_missing(use_conda: bool, frontend: str = "conda") -> str | None:
    """Why ``--use-conda`` cannot run here (its frontend is not on PATH), with how to get it;
    None where it can, or where conda is not asked for."""
    if not use_conda or shutil.which(frontend):
        return None
    return (
        f"--use-conda needs `{frontend}` on PATH, and there is none. Install Miniforge "
        f'({MINIFORGE}; the README\'s "Conda envs" section has the two commands), or run '
        "without --use-conda: the venv of the Quickstart has every package the rules need"
    )
