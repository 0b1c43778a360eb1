# Rules: counterfactual. For each (target, step) pair, removal rule and fraction: remove the k
# examples the rule picks, retrain with full_0's recipe and seed (rules/training.smk: retrain_removed, the same
# training code), then measure f_t and P(same feature | x_t) against the reference model
# (stepattr.counterfactual.removal, .counterfactual_report).


include: "functions/counterfactual.smk"


rule counterfactual_pairs:
    input:
        **counterfactual_pair_inputs(),
    output:
        f"{CF_DIR}/pairs.csv",
    log:
        f"{LOGS}/counterfactual_pairs/pairs.log",
    params:
        counterfactual=config["counterfactual"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(1000),
        runtime=by_attempt(5),
    script:
        "../scripts/counterfactual/counterfactual_pairs.py"


rule removal_mask:
    input:
        unpack(removal_inputs),
    output:
        mask=f"{CF_DIR}/removals/removed_{{removal}}_p{{pair}}_f{{frac}}.npy",
        table=f"{CF_DIR}/removals/removed_{{removal}}_p{{pair}}_f{{frac}}.csv",
    wildcard_constraints:
        removal="|".join(REMOVAL_RULES),
        pair=r"\d+",
        frac=r"\d+",
    log:
        f"{LOGS}/removal_mask/removed_{{removal}}_p{{pair}}_f{{frac}}.log",
    params:
        fraction=counterfactual_fraction,
        seed=config["counterfactual"]["seed"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(2000),
        runtime=by_attempt(5),
    script:
        "../scripts/counterfactual/removal_mask.py"


rule counterfactual_eval:
    input:
        model=f"{MODELS}/{{model_id}}/model.safetensors",
        model_config=f"{MODELS}/{{model_id}}/config.json",
        original=model_file("full_0"),
        original_config=f"{MODELS}/full_0/config.json",
        targets=f"{TARGETS}/generated.npz",
        pairs=f"{CF_DIR}/pairs.csv",
        classifier=f"{OUT}/classifier/model.safetensors",
        classifier_config=f"{OUT}/classifier/config.json",
        clip=clip_inputs(),
    output:
        f"{CF_DIR}/eval/{{model_id}}.csv",
    wildcard_constraints:
        model_id=f"{REMOVED_MODEL_PATTERN}|{REFERENCE_MODEL}|full_0",
    log:
        f"{LOGS}/counterfactual_eval/{{model_id}}.log",
    benchmark:
        f"{BENCH}/counterfactual_eval/{{model_id}}.tsv"
    params:
        pairs=counterfactual_eval_pairs,
        resamples=ground_truth_resamples(),
        output_seed=config["attribution"]["seed"],
        completions=config["counterfactual"]["completions"],
        transitions=config["transitions"],
        clip=config["clip"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["transitions"]["batch_size"])),
        runtime=by_attempt(counterfactual_eval_runtime),
        gpu=gpu_resource(),
    script:
        "../scripts/counterfactual/counterfactual_eval.py"


rule counterfactual_table:
    input:
        evals=counterfactual_eval_files(),
        removals=[f"{CF_DIR}/removals/{m}.csv" for m in removed_model_ids()],
        pairs=f"{CF_DIR}/pairs.csv",
    output:
        csv=report(
            f"{TABLES}/counterfactual.csv", caption="../report/counterfactual_table.rst", category="Counterfactual"
        ),
        md=f"{TABLES}/counterfactual.md",
        per_pair=f"{CF_DIR}/per_pair.csv",
    log:
        f"{LOGS}/counterfactual_table/counterfactual.log",
    params:
        counterfactual=config["counterfactual"],
        removed_models=removed_model_ids(),
        recipe={
            "steps": counterfactual_train_steps(),
            "seed": config["train"]["seed"],
            "reference": counterfactual_reference(),
            "completion_seed": config["transitions"]["seed"],
            "completion_steps": config["transitions"]["completion_steps"],
            "output_seed": config["attribution"]["seed"],
            "resamples": ground_truth_resamples(),
        },
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(1000),
        runtime=by_attempt(5),
    script:
        "../scripts/counterfactual/counterfactual_table.py"


rule counterfactual_figure:
    input:
        f"{TABLES}/counterfactual.csv",
    output:
        report(
            f"{FIGURES}/counterfactual.png", caption="../report/counterfactual_figure.rst", category="Counterfactual"
        ),
    log:
        f"{LOGS}/counterfactual_figure/counterfactual.log",
    params:
        removal_rules=config["counterfactual"]["rules"],
        reference=counterfactual_reference(),
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(1000),
        runtime=by_attempt(5),
    script:
        "../scripts/counterfactual/counterfactual_figure.py"
