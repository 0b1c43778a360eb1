"""Workflow plumbing: what the rules and tools need besides the method.

Modules (import them directly): ``names`` (the closed lists: methods, baselines, removal rules,
model ids, dataset sources, score files; torch-free, imported by rules/common.smk),
``configs`` (config overlays merged over config/config.yaml; typed nested ``--config``
values; torch-free), ``checks`` (relations between config keys, checked before any job),
``cost`` (compute estimates: runtime requests and the cost table), ``runtimes`` (measured
runtimes from benchmark files), ``dry_run`` (``snakemake -n`` from Python), ``provenance``
(how tables and figures name their config), ``script`` (the start of every rule script),
``deployment`` (what ``--use-conda`` needs; torch-free), ``docs`` (the generated parts of the
docs: config reference, cost tables, rule graph, results summary; scripts/docs/regenerate.py).
"""
