# Rules: trak (featurize, then score). Per-step TRAK features (stepattr.trak): projected per-example gradients of
# the training examples (sharded, then gathered) and of every target at every grid step, per
# method and full model. Each .npy has a .json record (featurizer, weights' SHA-256, draws).


include: "functions/trak.smk"


rule featurize_train:
    input:
        model=model_file("{model_id}"),
        model_config=f"{MODELS}/{{model_id}}/config.json",
        train=f"{DATA}/train.npz",
        **conditioning_inputs(),
    output:
        features=temp(f"{FEATURES}/{{method}}/{{model_id}}/train_{{shard}}.npy"),
        info=temp(f"{FEATURES}/{{method}}/{{model_id}}/train_{{shard}}.json"),
    wildcard_constraints:
        method="|".join(attribution_methods()),
        model_id=r"full_\d+",
    log:
        f"{LOGS}/featurize_train/{{method}}/{{model_id}}_{{shard}}.log",
    benchmark:
        f"{BENCH}/featurize_train/{{method}}/{{model_id}}_{{shard}}.tsv"
    params:
        output_function=method_output_function,
        projector=method_projector,
        attribution=featurize_settings(),
        caption_dropout=config["train"]["caption_dropout"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(featurize_mem_mb()),
        runtime=by_attempt(featurize_train_runtime),
        gpu=gpu_resource(),
    script:
        "../scripts/trak/featurize_train.py"


rule gather_train_features:
    input:
        unpack(train_feature_shards),
        train=f"{DATA}/train.npz",
    output:
        features=f"{FEATURES}/{{method}}/{{model_id}}/train.npy",
        info=f"{FEATURES}/{{method}}/{{model_id}}/train.json",
    wildcard_constraints:
        method="|".join(attribution_methods()),
        model_id=r"full_\d+",
    log:
        f"{LOGS}/gather_train_features/{{method}}/{{model_id}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(gather_mem_mb()),
        runtime=by_attempt(10),
    script:
        "../scripts/trak/gather_train_features.py"


rule featurize_targets:
    input:
        model=model_file("{model_id}"),
        model_config=f"{MODELS}/{{model_id}}/config.json",
        targets=f"{TARGETS}/{{target_set}}.npz",
        **conditioning_inputs(),
    output:
        features=f"{FEATURES}/{{method}}/{{model_id}}/{{target_set}}.npy",
        info=f"{FEATURES}/{{method}}/{{model_id}}/{{target_set}}.json",
        whole_loss=f"{FEATURES}/{{method}}/{{model_id}}/{{target_set}}_whole_loss.npy",
        whole_loss_info=f"{FEATURES}/{{method}}/{{model_id}}/{{target_set}}_whole_loss.json",
    wildcard_constraints:
        method="|".join(attribution_methods()),
        model_id=r"full_\d+",
    log:
        f"{LOGS}/featurize_targets/{{method}}/{{model_id}}_{{target_set}}.log",
    benchmark:
        f"{BENCH}/featurize_targets/{{method}}/{{model_id}}_{{target_set}}.tsv"
    params:
        output_function=method_output_function,
        projector=method_projector,
        attribution=featurize_settings(),
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(featurize_mem_mb()),
        runtime=by_attempt(featurize_targets_runtime),
        gpu=gpu_resource(),
    script:
        "../scripts/trak/featurize_targets.py"


rule score:
    input:
        unpack(score_inputs),
    output:
        **method_score_files("{method}"),
    wildcard_constraints:
        method="|".join(attribution_methods()),
    log:
        f"{LOGS}/score/{{method}}.log",
    benchmark:
        f"{BENCH}/score/{{method}}.tsv"
    params:
        models=full_model_ids(),
        target_sets=TARGET_SETS,
        attribution=config["attribution"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(score_mem_mb()),
        runtime=by_attempt(30),
    script:
        "../scripts/trak/score.py"
