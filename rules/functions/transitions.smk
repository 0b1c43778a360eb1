# Helpers of this stage's rules only; what two or more stages share is in rules/common.smk.


CLASSIFIER_FILES = ["model.safetensors", "config.json", "metrics.json"]


def classifier_outputs():
    """Classifier, feature curves, feature attribution."""
    return (
        [f"{OUT}/classifier/{name}" for name in CLASSIFIER_FILES]
        + transition_files("")
        + transition_files("_intervals")
        + [f"{TABLES}/feature_attribution.csv", f"{TABLES}/feature_attribution.md"]
        + [f"{FIGURES}/transitions.png"]
    )


def transition_files(suffix):
    """Curves ("") or intervals ("_intervals") of every target set, in TARGET_SETS order."""
    return [f"{TRANSITIONS}/{name}{suffix}.csv" for name in TARGET_SETS]


def feature_attribution_method():
    """Scores read by feature attribution: transitions.method, else TRAK with the loss function."""
    return config["transitions"]["method"] or loss_method()


def completion_runtime(wildcards):
    """Minutes requested by feature_curves: N completions per target of this set and grid step."""
    from stepattr.workflow.cost import completion_passes, forward_seconds, set_sizes

    passes = set_sizes(config)[wildcards.target_set] * completion_passes(
        config, list(config["sampling"]["grid"]), config["transitions"]["completions"]
    )
    return minutes(forward_seconds(config, passes, device_kind()))


def completion_guidance():
    """Guidance of the text-to-image family's completions: transitions.guidance, else the
    targets' own (sampling.target_guidance)."""
    guidance = config["transitions"]["guidance"]
    return config["sampling"]["target_guidance"] if guidance is None else guidance


def feature_curves_inputs(wildcards):
    """Text-to-image completions also read what decodes and conditions them."""
    return decoding_inputs()
