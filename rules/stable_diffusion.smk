# Rules: pipeline. The text-to-image family: full_0, the autoencoder and the text encoder saved
# as one StableDiffusionPipeline folder. The stable_diffusion family: full_0's LoRA in
# diffusers' format, what its LoRA fine-tune changes in the pipeline's samples, and the
# pretrained pipeline's own feature transitions (stepattr.stable_diffusion).


include: "functions/stable_diffusion.smk"


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
        "../scripts/stable_diffusion/export_pipeline.py"


rule fine_tune_effect:
    input:
        model=model_file("full_0"),
        model_config=f"{MODELS}/full_0/config.json",
        classifier=f"{OUT}/classifier/model.safetensors",
        train=f"{DATA}/train.npz",
        pipeline=pipeline_index(),
    output:
        table=f"{TABLES}/fine_tune_effect.csv",
        markdown=f"{TABLES}/fine_tune_effect.md",
        figure=report(f"{FIGURES}/fine_tune_effect.png", caption="../report/fine_tune_effect.rst", category="Targets"),
    log:
        f"{LOGS}/fine_tune_effect/fine_tune_effect.log",
    benchmark:
        f"{BENCH}/fine_tune_effect/fine_tune_effect.tsv"
    params:
        effect=config["pipeline"]["effect"],
        device=config["device"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=by_attempt(8000),
        runtime=by_attempt(60),
        gpu=gpu_resource(),
    script:
        "../scripts/stable_diffusion/fine_tune_effect.py"


rule export_lora:
    input:
        model=model_file("full_0"),
        model_config=f"{MODELS}/full_0/config.json",
        pipeline=pipeline_index(),
    output:
        weights=f"{OUT}/pipeline/lora/pytorch_lora_weights.safetensors",
    log:
        f"{LOGS}/export_lora/export_lora.log",
    benchmark:
        f"{BENCH}/export_lora/export_lora.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(8000),
        runtime=by_attempt(15),
    script:
        "../scripts/stable_diffusion/export_lora.py"


rule pipeline_transitions:
    input:
        pipeline=pipeline_index(),
        clip=transitions_clip_files(),
    output:
        curves=f"{OUT}/pipeline_transitions/curves.csv",
        intervals=f"{OUT}/pipeline_transitions/intervals.csv",
        markdown=f"{TABLES}/pipeline_transitions.md",
        figure=report(
            f"{FIGURES}/pipeline_transitions.png",
            caption="../report/pipeline_transitions.rst",
            category="Feature transitions",
        ),
    log:
        f"{LOGS}/pipeline_transitions/pipeline_transitions.log",
    benchmark:
        f"{BENCH}/pipeline_transitions/pipeline_transitions.tsv"
    params:
        transitions=config["pipeline"]["transitions"],
        grid=config["sampling"]["grid"],
        device=config["device"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=by_attempt(8000),
        runtime=by_attempt(pipeline_transitions_runtime),
        gpu=gpu_resource(),
    script:
        "../scripts/stable_diffusion/pipeline_transitions.py"
