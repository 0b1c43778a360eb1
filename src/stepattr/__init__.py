"""stepattr: per-step data attribution for diffusion models (journey-TRAK and friends).

The library behind the Snakemake workflow: datasets, DDPM training and sampling, per-step
TRAK features and scores, baselines, LDS, feature transitions. Every module is importable and
testable without Snakemake; the workflow's scripts are thin wrappers around it.
"""

__version__ = "0.1.0"
