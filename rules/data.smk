# Rules: data. One job turns the configured source (mnist5k, cifar10, image_folder) into the
# train/test split files and manifest that every later rule reads (see stepattr.datasets).


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
        "../scripts/prepare_data.py"
