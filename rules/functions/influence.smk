# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


INFLUENCE = f"{OUT}/influence"


def influence_methods():
    """K-FAC / EK-FAC methods of this run: influence.methods x attribution.output_functions."""
    from stepattr.core.names import influence_methods as methods_of

    return methods_of(config)


def influence_outputs():
    """Score directories of the influence methods."""
    return [path for m in influence_methods() for path in score_files(m).values()]


def influence_output_function(wildcards):
    from stepattr.core.names import parse_influence_method

    return parse_influence_method(wildcards.method)[1]


def influence_model_score_files(wildcards):
    """Every full model's raw scores of the method's output function, with their records."""
    fn = influence_output_function(wildcards)
    files = [f"{INFLUENCE}/{fn}/{m}/scores.npy" for m in full_model_ids()]
    return {
        "raw": files,
        "raw_whole_loss": [f"{INFLUENCE}/{fn}/{m}/whole_loss.npy" for m in full_model_ids()],
        "records": [f.removesuffix(".npy") + ".json" for f in files],
    }


def influence_score_inputs(wildcards):
    """Raw scores, the targets, and the held-out subsets (never the scored ones)."""
    inputs = {**influence_model_score_files(wildcards), "targets": target_files()}
    if config["subsets"]["heldout"]:
        inputs |= {"masks": f"{OUT}/subsets/masks.npy", "outputs": subset_output_files("heldout")}
    return inputs


def influence_mem_mb():
    """Host memory of an influence scoring job (stepattr.workflow.cost)."""
    from stepattr.workflow import cost

    return cost.influence_mem_mb(config)
