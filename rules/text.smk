# Rules: text (stepattr.text), the text-to-image family's frozen text encoder: trained here
# (tokenizer + small CLIP on the training captions) where text_encoder.pretrained is null, else
# read from that folder or hub id; every distinct training caption encoded once.


include: "functions/text.smk"


rule train_text_encoder:
    input:
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
    output:
        config=f"{TEXT_ENCODER}/text_encoder/config.json",
        clip=f"{TEXT_ENCODER}/clip/config.json",
        metrics=f"{TEXT_ENCODER}/metrics.json",
        loss=f"{TEXT_ENCODER}/loss.csv",
    log:
        f"{LOGS}/train_text_encoder/text_encoder.log",
    benchmark:
        f"{BENCH}/train_text_encoder/text_encoder.tsv"
    params:
        text_encoder=config["text_encoder"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["text_encoder"]["threads"]
    resources:
        mem_mb=by_attempt(split_mem_mb(4000)),
        runtime=by_attempt(60),
        gpu=gpu_resource(),
    script:
        "../scripts/text/train_text_encoder.py"


rule encode_text:
    input:
        text_encoder=text_encoder_files(),
        train=f"{DATA}/train.npz",
    output:
        states=f"{OUT}/text/states.npz",
    log:
        f"{LOGS}/encode_text/states.log",
    benchmark:
        f"{BENCH}/encode_text/states.tsv"
    params:
        hub_id=text_encoder_hub_id(),
        prompts=config["sampling"]["prompts"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["text_encoder"]["threads"]
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(30),
        gpu=gpu_resource(),
    script:
        "../scripts/text/encode_text.py"
