# Rules: explorer. One self-contained HTML page to walk every target's journey: at each grid
# step its x_t and x0hat_t, the top influencers of any scored method, its feature curve and
# transition, the method's LDS (and the retraining ceiling) and the patch view
# (stepattr.explorer).


include: "functions/explorer.smk"


rule explorer:
    input:
        **explorer_inputs(),
    output:
        html=report(
            f"{EXPLORER}/index.html",
            caption="../report/explorer.rst",
            category="Explorer",
            labels={"page": "index.html"},
        ),
    log:
        f"{LOGS}/explorer/explorer.log",
    benchmark:
        f"{BENCH}/explorer/explorer.tsv"
    params:
        methods=explorer_methods(),
        target_sets=TARGET_SETS,
        top_k=config["explorer"]["top_k"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb(2000)),
        runtime=by_attempt(10),
    script:
        "../scripts/explorer/explorer.py"
