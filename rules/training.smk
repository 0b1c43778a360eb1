# Rules: training (stepattr.training). Random training subsets; every DDPM model, from one
# definition (rule train) that the subset models (retrain) and the counterfactual removal models
# (retrain_removed, train_counterfactual_reference) reuse with `use rule ... with:`. A killed
# training job resumes from {OUT}/.train_state/{model_id}.pt; a finished model is never retrained.


include: "functions/training.smk"


rule make_subsets:
    input:
        train=f"{DATA}/train.npz",
    output:
        masks=f"{OUT}/subsets/masks.npy",
        table=f"{OUT}/subsets/subsets.csv",
    log:
        f"{LOGS}/make_subsets/make_subsets.log",
    params:
        scored=config["subsets"]["count"],
        heldout=config["subsets"]["heldout"],
        alpha=config["subsets"]["alpha"],
        seed=config["subsets"]["seed"],
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=by_attempt(1000),
        runtime=by_attempt(5),
    script:
        "../scripts/training/make_subsets.py"


rule train:
    input:
        train=f"{DATA}/train.npz",
        manifest=f"{DATA}/manifest.json",
        **conditioning_inputs(),
    output:
        **model_dir_files("full_{i}"),
    wildcard_constraints:
        i=r"\d+",
    log:
        f"{LOGS}/train/full_{{i}}.log",
    benchmark:
        f"{BENCH}/train/full_{{i}}.tsv"
    params:
        model_id="full_{i}",
        state=train_state("full_{i}"),
        seed=full_model_seed,
        steps=config["train"]["steps"],
        subset_row=None,
        shared_batches=config["subsets"]["shared_batches"],
        model=model_params(),
        train=config["train"],
        diffusion=config["diffusion"],
        device=config["device"],
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["train"]["batch_size"])),
        runtime=by_attempt(job_runtime("train")),
        gpu=gpu_resource(),
    script:
        "../scripts/training/train.py"


use rule train as retrain with:
    input:
        train=f"{DATA}/train.npz",
        manifest=f"{DATA}/manifest.json",
        masks=f"{OUT}/subsets/masks.npy",
        **conditioning_inputs(),
    output:
        **model_dir_files("subset_{j}_s{s}"),
    wildcard_constraints:
        j=ONE_MODEL_ROWS,
        s=r"\d+",
    log:
        f"{LOGS}/retrain/subset_{{j}}_s{{s}}.log",
    benchmark:
        f"{BENCH}/retrain/subset_{{j}}_s{{s}}.tsv"
    params:
        model_id="subset_{j}_s{s}",
        state=train_state("subset_{j}_s{s}"),
        seed=subset_model_seed,
        steps=subset_train_steps(),
        subset_row=subset_row,
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["train"]["batch_size"])),
        runtime=by_attempt(job_runtime("retrain")),
        gpu=gpu_resource(),


use rule train as retrain_removed with:
    input:
        train=f"{DATA}/train.npz",
        manifest=f"{DATA}/manifest.json",
        masks=f"{CF_DIR}/removals/removed_{{removal}}_p{{pair}}_f{{frac}}.npy",
        **conditioning_inputs(),
    output:
        **model_dir_files("removed_{removal}_p{pair}_f{frac}"),
    wildcard_constraints:
        removal="|".join(REMOVAL_RULES),
        pair=r"\d+",
        frac=r"\d+",
    log:
        f"{LOGS}/retrain_removed/removed_{{removal}}_p{{pair}}_f{{frac}}.log",
    benchmark:
        f"{BENCH}/retrain_removed/removed_{{removal}}_p{{pair}}_f{{frac}}.tsv"
    params:
        model_id="removed_{removal}_p{pair}_f{frac}",
        state=train_state("removed_{removal}_p{pair}_f{frac}"),
        seed=config["train"]["seed"],
        steps=counterfactual_train_steps(),
        subset_row=0,
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["train"]["batch_size"])),
        runtime=by_attempt(job_runtime("retrain_removed")),
        gpu=gpu_resource(),


use rule train as train_counterfactual_reference with:
    output:
        **model_dir_files(REFERENCE_MODEL),
    log:
        f"{LOGS}/train_counterfactual_reference/{REFERENCE_MODEL}.log",
    benchmark:
        f"{BENCH}/train_counterfactual_reference/{REFERENCE_MODEL}.tsv"
    params:
        model_id=REFERENCE_MODEL,
        state=train_state(REFERENCE_MODEL),
        seed=config["train"]["seed"],
        steps=counterfactual_train_steps(),
    resources:
        mem_mb=by_attempt(torch_mem_mb(config["train"]["batch_size"])),
        runtime=by_attempt(job_runtime("retrain_removed")),
        gpu=gpu_resource(),


# G subset models of one seed per job (stepattr.training.batched) where subsets.group_size > 1;
# one rule per group, since a job's outputs (G model folders) cannot follow from one wildcard
# pattern. None where group_size is 1, the default.
for group, seed_index, rows in subset_groups():

    rule:
        name:
            group
        input:
            train=f"{DATA}/train.npz",
            manifest=f"{DATA}/manifest.json",
            masks=f"{OUT}/subsets/masks.npy",
        output:
            [f"{MODELS}/subset_{j}_s{seed_index}/{name}" for j in rows for name in MODEL_FILES],
        log:
            f"{LOGS}/retrain/{group}.log",
        benchmark:
            f"{BENCH}/retrain/{group}.tsv"
        params:
            model_ids=[subset_model_id(j, seed_index) for j in rows],
            subset_rows=list(rows),
            state=train_state(group),
            seed=subset_seed(seed_index),
            steps=subset_train_steps(),
            model=model_params(),
            train=config["train"],
            diffusion=config["diffusion"],
            device=config["device"],
        conda:
            "../envs/torch.yaml"
        threads: config["train"]["threads"]
        resources:
            mem_mb=by_attempt(len(rows) * torch_mem_mb(config["train"]["batch_size"])),
            runtime=by_attempt(len(rows) * job_runtime("retrain")),
            gpu=gpu_resource(),
        script:
            "../scripts/training/train_group.py"
