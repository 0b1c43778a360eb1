# Rules: influence. K-FAC / EK-FAC influence of every training example on f_t at every grid step
# (stepattr.influence): factors per full model, raw scores per (output function, model) for
# every damping, then per method the model average at the damping chosen on held-out subsets.


include: "functions/influence.smk"


rule fit_influence_factors:
    input:
        model=model_file("{model_id}"),
        model_config=f"{MODELS}/{{model_id}}/config.json",
        train=f"{DATA}/train.npz",
    output:
        factors=f"{INFLUENCE}/factors/{{model_id}}.safetensors",
        info=f"{INFLUENCE}/factors/{{model_id}}.json",
    wildcard_constraints:
        model_id=r"full_\d+",
    log:
        f"{LOGS}/fit_influence_factors/{{model_id}}.log",
    benchmark:
        f"{BENCH}/fit_influence_factors/{{model_id}}.tsv"
    params:
        influence=config["influence"],
        attribution=config["attribution"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["influence"]["batch_size"])),
        runtime=by_attempt(job_runtime("fit_influence_factors")),
        gpu=gpu_resource(),
    script:
        "../scripts/influence/fit_factors.py"


rule influence_model_scores:
    input:
        model=model_file("{model_id}"),
        model_config=f"{MODELS}/{{model_id}}/config.json",
        factors=f"{INFLUENCE}/factors/{{model_id}}.safetensors",
        factors_info=f"{INFLUENCE}/factors/{{model_id}}.json",
        train=f"{DATA}/train.npz",
        targets=target_files(),
    output:
        scores=f"{INFLUENCE}/{{output_function}}/{{model_id}}/scores.npy",
        info=f"{INFLUENCE}/{{output_function}}/{{model_id}}/scores.json",
        whole_loss=f"{INFLUENCE}/{{output_function}}/{{model_id}}/whole_loss.npy",
    wildcard_constraints:
        output_function="loss|square_norm",
        model_id=r"full_\d+",
    log:
        f"{LOGS}/influence_model_scores/{{output_function}}/{{model_id}}.log",
    benchmark:
        f"{BENCH}/influence_model_scores/{{output_function}}/{{model_id}}.tsv"
    params:
        target_sets=TARGET_SETS,
        influence=config["influence"],
        attribution=config["attribution"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(influence_mem_mb()),
        runtime=by_attempt(job_runtime("influence_model_scores")),
        gpu=gpu_resource(),
    script:
        "../scripts/influence/model_scores.py"


rule influence_scores:
    input:
        unpack(influence_score_inputs),
    output:
        **method_score_files("{method}"),
    wildcard_constraints:
        method="|".join(influence_methods()) or "no_influence_method",
    log:
        f"{LOGS}/influence_scores/{{method}}.log",
    benchmark:
        f"{BENCH}/influence_scores/{{method}}.tsv"
    params:
        target_sets=TARGET_SETS,
        heldout_models=subset_model_ids("heldout"),
        influence=config["influence"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(20),
    script:
        "../scripts/influence/scores.py"
