# Per-step data attribution for diffusion models (journey-TRAK), one DAG from data to figures.
# Run: snakemake --cores all            (default config: config/config.yaml)
# One rule file per stage, one package per stage (src/stepattr/<stage>/), one folder of thin
# rule scripts per stage (scripts/<stage>/); README "Code map" lists them. The method as
# computed: docs/method.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/latents.smk"
include: "rules/text.smk"
include: "rules/training.smk"
include: "rules/targets.smk"
include: "rules/trak.smk"
include: "rules/influence.smk"
include: "rules/lds.smk"
include: "rules/transitions.smk"
include: "rules/counterfactual.smk"
include: "rules/figures.smk"
include: "rules/stable_diffusion.smk"
include: "rules/explorer.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
