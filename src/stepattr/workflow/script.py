"""The start of every rule script (scripts/<stage>/*.py): its output goes to the job's log.

Torch-free and called before the script's other imports, so that an import error lands in
the log Snakemake points to as well.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


def start(smk: Any) -> Any:
    """Send stdout and stderr (line-buffered) to ``smk.log[0]``, log INFO there; return ``smk``."""
    sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)  # noqa: SIM115 (the job's life)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    return smk
