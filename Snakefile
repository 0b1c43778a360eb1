# Per-step data attribution for diffusion models (journey-TRAK), one DAG from data to figures.
# Run: snakemake --cores all            (default config: config/config.yaml)
# Logic lives in the package under src/stepattr; rules are thin, scripts are thin.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/sample.smk"
include: "rules/featurize.smk"
include: "rules/score.smk"
include: "rules/transitions.smk"
include: "rules/lds.smk"
include: "rules/counterfactual.smk"
include: "rules/figures.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
