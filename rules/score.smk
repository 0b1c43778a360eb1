# Rules: score. TRAK scores per method: per full model the kernel (Phi^T Phi + lambda I)^-1 with
# lambda from lambda.json (chosen by the LDS rules), averaged over models (stepattr.trak.scores).


rule score:
    input:
        unpack(score_inputs),
    output:
        scores=f"{SCORES}/{{method}}/scores.npy",
        index=f"{SCORES}/{{method}}/index.csv",
        meta=f"{SCORES}/{{method}}/meta.json",
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
        "../scripts/score.py"
