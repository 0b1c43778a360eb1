# Rules: pipeline (the text-to-image family). full_0, the autoencoder and the text encoder
# saved as one StableDiffusionPipeline folder (stepattr.pipeline).


include: "functions/pipeline.smk"


rule export_pipeline:
    input:
        unpack(pipeline_inputs),
        model=model_file("full_0"),
        model_config=f"{MODELS}/full_0/config.json",
    output:
        index=f"{OUT}/pipeline/model_index.json",
    log:
        f"{LOGS}/export_pipeline/pipeline.log",
    benchmark:
        f"{BENCH}/export_pipeline/pipeline.tsv"
    params:
        autoencoder_hub_id=autoencoder_hub_id(),
        text_encoder_hub_id=text_encoder_hub_id(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(15),
    script:
        "../scripts/pipeline/export_pipeline.py"
