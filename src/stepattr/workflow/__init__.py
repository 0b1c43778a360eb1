"""Workflow plumbing: what the rules and tools need besides the method.

The top layer: it may import every stage (``checks`` asks stages about their config), and no
stage imports it; the closed lists and provenance it shares with the stages live in
:mod:`stepattr.core`. Modules (import them directly): ``configs`` (config overlays merged over
config/config.yaml; typed nested ``--config`` values; torch-free), ``checks`` (relations between
config keys, checked before any job), ``cost`` (compute estimates: runtime and memory requests,
the cost table), ``runtimes`` (measured runtimes from benchmark files), ``dry_run`` (``snakemake
-n`` from Python), ``script`` (the start of every rule script), ``deployment`` (what
``--use-conda`` needs; torch-free), ``docs`` (the generated parts of the docs: config reference,
cost tables, rule graph, results summary; scripts/docs/regenerate.py)."""
