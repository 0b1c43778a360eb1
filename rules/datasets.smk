# Rules: datasets (stepattr.datasets). One job turns the configured source (one of
# stepattr.core.names.DATASET_SOURCES) into the train/test split files and manifest that
# every later rule reads.


include: "functions/datasets.smk"


rule prepare_data:
    input:
        data_inputs(),
    output:
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
        manifest=f"{DATA}/manifest.json",
    log:
        f"{LOGS}/prepare_data/{DATASET}.log",
    benchmark:
        f"{BENCH}/prepare_data/{DATASET}.tsv"
    params:
        dataset=config["dataset"],
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(data_resource("mem_mb")),
        runtime=by_attempt(data_resource("runtime")),
    script:
        "../scripts/datasets/prepare_data.py"
