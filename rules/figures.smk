# Rules: figures. Top influencers per step for every target (PNG + GIF) and an overview, patch
# attribution (masked target features scored against the train features already computed,
# with the same lambda) and its figure (stepattr.figures).


include: "functions/figures.smk"


report: "../report/workflow.rst"


rule influencer_figure:
    input:
        **figures_scores(),
        targets=target_files(),
        train=f"{DATA}/train.npz",
    output:
        png=report(
            f"{FIGURES}/influencers/{{target_set}}_{{target_id}}.png",
            caption="../report/influencer_target.rst",
            category="Influencers",
            subcategory="per target",
            labels={"target set": "{target_set}", "target": "{target_id}", "kind": "figure"},
        ),
        gif=report(
            f"{FIGURES}/animations/{{target_set}}_{{target_id}}.gif",
            caption="../report/influencer_animation.rst",
            category="Influencers",
            subcategory="animations",
            labels={"target set": "{target_set}", "target": "{target_id}", "kind": "animation"},
        ),
    wildcard_constraints:
        target_id=r"\d+",
    log:
        f"{LOGS}/influencer_figure/{{target_set}}_{{target_id}}.log",
    benchmark:
        f"{BENCH}/influencer_figure/{{target_set}}_{{target_id}}.tsv"
    params:
        target_sets=TARGET_SETS,
        top_k=config["figures"]["top_k"],
        frame_ms=config["figures"]["frame_ms"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb(2000)),
        runtime=by_attempt(10),
    script:
        "../scripts/figures/influencer_figure.py"


rule influencer_overview:
    input:
        **figures_scores(),
        targets=target_files(),
        train=f"{DATA}/train.npz",
    output:
        report(
            f"{FIGURES}/influencers.png",
            caption="../report/influencers.rst",
            category="Influencers",
            subcategory="overview",
            labels={"figure": "influencers.png"},
        ),
    log:
        f"{LOGS}/influencer_overview/influencers.log",
    benchmark:
        f"{BENCH}/influencer_overview/influencers.tsv"
    params:
        target_sets=TARGET_SETS,
        target_ids=config["figures"]["overview_targets"],
        top_k=config["figures"]["top_k"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb(2000)),
        runtime=by_attempt(10),
    script:
        "../scripts/figures/influencer_overview.py"


rule patch_features:
    input:
        model=model_file("{model_id}"),
        model_config=f"{MODELS}/{{model_id}}/config.json",
        targets=target_files(),
    output:
        features=f"{FEATURES}/{{method}}/{{model_id}}/patches.npy",
        info=f"{FEATURES}/{{method}}/{{model_id}}/patches.json",
    wildcard_constraints:
        method=patch_method(),
        model_id=r"full_\d+",
    log:
        f"{LOGS}/patch_features/{{method}}/{{model_id}}.log",
    benchmark:
        f"{BENCH}/patch_features/{{method}}/{{model_id}}.tsv"
    params:
        target_sets=TARGET_SETS,
        output_function=method_output_function,
        projector=method_projector,
        attribution=config["attribution"],
        figures=config["figures"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(featurize_mem_mb()),
        runtime=by_attempt(patch_features_runtime()),
        gpu=gpu_resource(),
    script:
        "../scripts/figures/patch_features.py"


rule patch_scores:
    input:
        unpack(patch_score_inputs),
    output:
        **patch_score_files(),
    log:
        f"{LOGS}/patch_scores/{patch_method()}.log",
    benchmark:
        f"{BENCH}/patch_scores/{patch_method()}.tsv"
    params:
        method=patch_method(),
        models=full_model_ids(),
        target_sets=TARGET_SETS,
        figures=config["figures"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(score_mem_mb()),
        runtime=by_attempt(30),
    script:
        "../scripts/figures/patch_scores.py"


rule patch_figure:
    input:
        **figures_scores(),
        patch_scores=patch_score_files()["scores"],
        patch_index=patch_score_files()["index"],
        patch_meta=patch_score_files()["meta"],
        targets=target_files(),
        train=f"{DATA}/train.npz",
    output:
        report(
            f"{FIGURES}/patches.png",
            caption="../report/patches.rst",
            category="Patch attribution",
            labels={"figure": "patches.png"},
        ),
    log:
        f"{LOGS}/patch_figure/patches.log",
    benchmark:
        f"{BENCH}/patch_figure/patches.tsv"
    params:
        target_sets=TARGET_SETS,
        top_k=config["figures"]["top_k"],
        provenance=config_provenance(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb(2000)),
        runtime=by_attempt(10),
    script:
        "../scripts/figures/patch_figure.py"
