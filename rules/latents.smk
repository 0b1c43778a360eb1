# Rules: latents (stepattr.latents), the text-to-image family's frozen autoencoder. Trained on
# the training split where autoencoder.pretrained is null, else read from that folder or hub id;
# every image encoded once into the latent cache; a reconstruction check with the classifier.


include: "functions/latents.smk"


rule train_autoencoder:
    input:
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
    output:
        config=f"{AUTOENCODER}/model/config.json",
        weights=f"{AUTOENCODER}/model/diffusion_pytorch_model.safetensors",
        metrics=f"{AUTOENCODER}/metrics.json",
        loss=f"{AUTOENCODER}/loss.csv",
    log:
        f"{LOGS}/train_autoencoder/autoencoder.log",
    benchmark:
        f"{BENCH}/train_autoencoder/autoencoder.tsv"
    params:
        autoencoder=config["autoencoder"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["autoencoder"]["threads"]
    resources:
        mem_mb=by_attempt(split_mem_mb(4000)),
        runtime=by_attempt(60),
        gpu=gpu_resource(),
    script:
        "../scripts/latents/train_autoencoder.py"


rule encode_latents:
    input:
        autoencoder=autoencoder_files(),
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
    output:
        latents=f"{OUT}/latents/latents.npz",
    log:
        f"{LOGS}/encode_latents/latents.log",
    benchmark:
        f"{BENCH}/encode_latents/latents.tsv"
    params:
        hub_id=autoencoder_hub_id(),
        scaling=latent_scaling(),
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["autoencoder"]["threads"]
    resources:
        mem_mb=by_attempt(split_mem_mb(4000)),
        runtime=by_attempt(30),
        gpu=gpu_resource(),
    script:
        "../scripts/latents/encode_latents.py"


rule autoencoder_report:
    input:
        autoencoder=autoencoder_files(),
        test=f"{DATA}/test.npz",
        classifier=f"{OUT}/classifier/model.safetensors",
    output:
        figure=report(f"{FIGURES}/autoencoder.png", caption="../report/autoencoder.rst", category="Latents"),
        table=f"{TABLES}/autoencoder.csv",
        markdown=f"{TABLES}/autoencoder.md",
    log:
        f"{LOGS}/autoencoder_report/autoencoder.log",
    benchmark:
        f"{BENCH}/autoencoder_report/autoencoder.tsv"
    params:
        hub_id=autoencoder_hub_id(),
        device=config["device"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(15),
        gpu=gpu_resource(),
    script:
        "../scripts/latents/autoencoder_report.py"
