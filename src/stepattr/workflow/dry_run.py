"""``snakemake -n`` from Python: the job listing that stepattr.workflow.cost and .runtimes read."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def dry_run(args: Sequence[str], force: str | None = None) -> str:
    """Printed output of ``snakemake -n --cores 1 [--force|--forceall] <args>`` run in the
    working directory; ``force`` is ``"force"`` (the targets' own jobs) or ``"forceall"`` (every
    job they need). Raises RuntimeError with the end of Snakemake's output if it fails."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1"]
    if force is not None:
        if force not in ("force", "forceall"):
            raise ValueError(f"force = {force!r}; expected 'force', 'forceall' or None")
        cmd.append(f"--{force}")
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[2:])} {' '.join(args)} failed:\n"
            + proc.stdout[-3000:]
            + proc.stderr[-3000:]
        )
    return proc.stdout + proc.stderr
