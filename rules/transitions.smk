# Rules: transitions. The workflow's classifier (feature detector and embedding), the
# feature curves P(feature | x_t) with their steepest-rise intervals, feature attribution at
# those intervals, and the transition figure (stepattr.detectors.classifier, .transitions,
# .feature_attribution, .transition_figure).


include: "functions/transitions.smk"


rule train_classifier:
    input:
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
    output:
        model=f"{OUT}/classifier/model.safetensors",
        config=f"{OUT}/classifier/config.json",
        metrics=f"{OUT}/classifier/metrics.json",
    log:
        f"{LOGS}/train_classifier/classifier.log",
    benchmark:
        f"{BENCH}/train_classifier/classifier.tsv"
    params:
        classifier=config["classifier"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["classifier"]["threads"]
    resources:
        mem_mb=by_attempt(split_mem_mb(4000)),
        runtime=by_attempt(60),
        gpu=gpu_resource(),
    script:
        "../scripts/transitions/train_classifier.py"


rule feature_curves:
    input:
        unpack(feature_curves_inputs),
        targets=f"{TARGETS}/{{target_set}}.npz",
        model=model_file("full_0"),
        model_config=f"{MODELS}/full_0/config.json",
        classifier=f"{OUT}/classifier/model.safetensors",
        classifier_config=f"{OUT}/classifier/config.json",
        clip=clip_inputs(),
    output:
        curves=f"{TRANSITIONS}/{{target_set}}.csv",
        intervals=f"{TRANSITIONS}/{{target_set}}_intervals.csv",
    log:
        f"{LOGS}/feature_curves/{{target_set}}.log",
    benchmark:
        f"{BENCH}/feature_curves/{{target_set}}.tsv"
    params:
        transitions=config["transitions"],
        clip=config["clip"],
        family=config["family"],
        guidance=completion_guidance(),
        hub_id=autoencoder_hub_id(),
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["transitions"]["batch_size"])),
        runtime=by_attempt(completion_runtime),
        gpu=gpu_resource(),
    script:
        "../scripts/transitions/feature_curves.py"


rule feature_attribution:
    input:
        **score_files(feature_attribution_method()),
        intervals=transition_files("_intervals"),
        train=f"{DATA}/train.npz",
    output:
        table=report(
            f"{TABLES}/feature_attribution.csv",
            caption="../report/feature_attribution.rst",
            category="Feature transitions",
        ),
        markdown=f"{TABLES}/feature_attribution.md",
        per_target=f"{TRANSITIONS}/feature_attribution_targets.csv",
    log:
        f"{LOGS}/feature_attribution/feature_attribution.log",
    params:
        transitions=config["transitions"],
        target_sets=TARGET_SETS,
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(10),
    script:
        "../scripts/transitions/feature_attribution.py"


rule transition_figure:
    input:
        curves=transition_files(""),
        intervals=transition_files("_intervals"),
        per_target=f"{TRANSITIONS}/feature_attribution_targets.csv",
        targets=target_files(),
        train=f"{DATA}/train.npz",
    output:
        figure=report(
            f"{FIGURES}/transitions.png", caption="../report/transitions.rst", category="Feature transitions"
        ),
    log:
        f"{LOGS}/transition_figure/transitions.log",
    params:
        target_sets=TARGET_SETS,
        figure_targets=config["transitions"]["figure_targets"],
        shown=min(5, config["transitions"]["top_k"]),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb(2000)),
        runtime=by_attempt(10),
    script:
        "../scripts/transitions/transition_figure.py"
