# Rules: lds. Ground truth from the subset models, lambda chosen on held-out subsets, baseline
# scores, and the LDS tables and figure (stepattr.lds: ground_truth,
# baselines, metric, tables; jobs for the file-level steps).


include: "functions/lds.smk"


rule eval_subset_outputs:
    input:
        model=model_file("{model_id}"),
        model_config=f"{MODELS}/{{model_id}}/config.json",
        targets=target_files(),
        **conditioning_inputs(),
    output:
        f"{LDS_DIR}/outputs/{{model_id}}.npz",
    wildcard_constraints:
        model_id=r"subset_\d+_s\d+",
    log:
        f"{LOGS}/eval_subset_outputs/{{model_id}}.log",
    benchmark:
        f"{BENCH}/eval_subset_outputs/{{model_id}}.tsv"
    params:
        target_sets=TARGET_SETS,
        resamples=ground_truth_resamples(),
        seed=config["attribution"]["seed"],
        dtrak_draws=config["lds"]["dtrak_draws"],
        lds_seed=config["lds"]["seed"],
        batch_size=config["lds"]["batch_size"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(2000),
        runtime=by_attempt(30),
        gpu=gpu_resource(),
    script:
        "../scripts/lds/eval_subset_outputs.py"


rule select_lambda:
    input:
        unpack(select_lambda_inputs),
    output:
        f"{SCORES}/{{method}}/lambda.json",
    wildcard_constraints:
        method="|".join(attribution_methods()),
    log:
        f"{LOGS}/select_lambda/{{method}}.log",
    benchmark:
        f"{BENCH}/select_lambda/{{method}}.tsv"
    params:
        lambdas=config["attribution"]["lambdas"],
        heldout_models=subset_model_ids("heldout"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(30),
    script:
        "../scripts/lds/select_lambda.py"


rule baseline_scores:
    input:
        unpack(baseline_inputs),
    output:
        **method_score_files("{baseline}"),
    wildcard_constraints:
        baseline="|".join(b for b in BASELINES if b != "embedding"),
    log:
        f"{LOGS}/baseline_scores/{{baseline}}.log",
    benchmark:
        f"{BENCH}/baseline_scores/{{baseline}}.tsv"
    params:
        target_sets=TARGET_SETS,
        seed=config["lds"]["seed"],
        models=full_model_ids(),
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(30),
    script:
        "../scripts/lds/baseline_scores.py"


rule embedding_scores:
    input:
        targets=target_files(),
        train=f"{DATA}/train.npz",
        classifier=[f"{OUT}/classifier/model.safetensors", f"{OUT}/classifier/config.json"],
    output:
        **method_score_files("embedding"),
    log:
        f"{LOGS}/baseline_scores/embedding.log",
    benchmark:
        f"{BENCH}/baseline_scores/embedding.tsv"
    params:
        target_sets=TARGET_SETS,
        seed=config["lds"]["seed"],
        clip=config["clip"],
        device=config["device"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb(4000)),
        runtime=by_attempt(30),
        gpu=gpu_resource(),
    script:
        "../scripts/lds/baseline_scores.py"


rule lds:
    input:
        scores=lds_score_files(),
        masks=f"{OUT}/subsets/masks.npy",
        outputs=subset_output_files("scored"),
        targets=target_files(),
    output:
        csv=report(f"{TABLES}/lds.csv", caption="../report/lds_table.rst", category="LDS"),
        md=f"{TABLES}/lds.md",
        fresh_csv=report(f"{TABLES}/lds_fresh_noise.csv", caption="../report/lds_fresh_noise_table.rst", category="LDS"),
        dtrak_csv=report(f"{TABLES}/lds_dtrak.csv", caption="../report/lds_dtrak_table.rst", category="LDS"),
        dtrak_md=f"{TABLES}/lds_dtrak.md",
        paired_csv=report(f"{TABLES}/lds_paired.csv", caption="../report/lds_paired_table.rst", category="LDS"),
        paired_md=f"{TABLES}/lds_paired.md",
    log:
        f"{LOGS}/lds/lds.log",
    benchmark:
        f"{BENCH}/lds/lds.tsv"
    params:
        scored_models=subset_model_ids("scored"),
        target_sets=TARGET_SETS,
        reference=loss_method(),
        lds=config["lds"],
        resamples=ground_truth_resamples(),
        subsets=config["subsets"] | {"train_steps": subset_train_steps()},
        seeds={k: config[k]["seed"] for k in ("train", "subsets", "sampling", "attribution", "lds")},
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(20),
    script:
        "../scripts/lds/lds_tables.py"


rule lds_figure:
    input:
        f"{TABLES}/lds.csv",
    output:
        report(f"{FIGURES}/lds.png", caption="../report/lds_figure.rst", category="LDS"),
    log:
        f"{LOGS}/lds_figure/lds.log",
    params:
        provenance=config_provenance(),
        subsets=config["subsets"] | {"train_steps": subset_train_steps()},
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(1000),
        runtime=by_attempt(5),
    script:
        "../scripts/lds/lds_figure.py"
