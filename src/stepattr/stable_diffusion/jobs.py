"""The rule entry points of stage stable_diffusion (scripts/stable_diffusion/): each reads its
rule's snakemake object once and calls the stage's functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stepattr.core.diffusion import load_model, resolve_device
from stepattr.core.images import load_split, save_image_grid, to_uint8
from stepattr.core.io import atomic_path, save_csv, save_text
from stepattr.core.provenance import describe_config
from stepattr.detectors.classifier import load_classifier
from stepattr.latents.autoencoder import autoencoder_source, load_latents
from stepattr.stable_diffusion.effect import EffectSettings, fine_tune_effect
from stepattr.stable_diffusion.export import (
    assemble_pipeline,
    export_lora,
    load_pipeline,
    save_pipeline,
)
from stepattr.stable_diffusion.figure import pipeline_transitions_figure
from stepattr.stable_diffusion.pretrained_curves import (
    PipelineTransitionsSettings,
    check_prompts,
    interval_rows,
    load_zero_shot,
    pipeline_transitions,
    summary_rows,
)
from stepattr.text.encoder import text_encoder_source, token_ids


def run_export_lora(smk: Any) -> None:
    """Rule export_lora: full_0's LoRA adapters in diffusers' format, checked to load as full_0
    -> {OUT}/pipeline/lora/pytorch_lora_weights.safetensors (stepattr.stable_diffusion.export)."""
    folder = Path(smk.output.weights).parent
    diff = export_lora(Path(smk.input.model).parent, folder)
    print(
        f"LoRA adapters of full_0 saved to {folder}; loaded by diffusers' load_lora_weights on "
        f"the base pipeline they predict within {diff:.2g} of full_0 (checked on one input)"
    )


def run_export_pipeline(smk: Any) -> None:
    """Rule export_pipeline: full_0, the autoencoder and the text encoder as one
    StableDiffusionPipeline folder -> {OUT}/pipeline/."""
    p = smk.params
    scaling_factor = load_latents(smk.input.latents)[2]
    pipeline = assemble_pipeline(
        Path(smk.input.model).parent,
        autoencoder_source(smk.input.autoencoder, p.autoencoder_hub_id),
        text_encoder_source(smk.input.text_encoder, p.text_encoder_hub_id),
        scaling_factor,
    )
    folder = save_pipeline(pipeline, Path(smk.output.index).parent)
    print(f"StableDiffusionPipeline saved to {folder} (latent scaling factor {scaling_factor:.5f})")


def run_fine_tune_effect(smk: Any) -> None:
    """Rule fine_tune_effect: samples of the pipeline's base UNet and of full_0 (base + LoRA) from
    the same noises, classified -> tables/fine_tune_effect.{csv,md}, figures/fine_tune_effect.png
    (stepattr.stable_diffusion.effect)."""
    torch.set_num_threads(smk.threads)
    p = smk.params
    device = resolve_device(p.device)
    index = smk.input.pipeline  # the pipeline folder's model_index.json
    pipeline = load_pipeline(Path(index if isinstance(index, str) else index[0]).parent, device)
    e = EffectSettings.from_config(p.effect)
    if e.prompt.strip():  # a prompt the pipeline would cut is an error, not a warning
        context = int(pipeline.text_encoder.config.max_position_embeddings)
        token_ids(pipeline.tokenizer, [e.prompt], context, "pipeline.effect.prompt")
    fine_tuned, _, _ = load_model(Path(smk.input.model).parent, device)
    table, samples = fine_tune_effect(
        pipeline,
        {"base": pipeline.unet, "fine_tuned": fine_tuned},
        load_classifier(Path(smk.input.classifier).parent, device=device),
        load_split(smk.input.train)[1],
        e,
        progress=True,
    )
    save_csv(smk.output.table, table)
    save_text(
        smk.output.markdown,
        f"What the LoRA fine-tune changes ({describe_config(p.provenance)}): "
        f"{e.samples} samples "
        f"of the pipeline's base UNet and of full_0 (base + LoRA) from the same noises, prompt "
        f"{e.prompt!r}, guidance {e.guidance}, {e.inference_steps} pipeline steps "
        f"(pipeline.effect.seed {e.seed}), labelled by the family's classifier; fractions with "
        "95% Wilson intervals, against the fine-tuning set's label distribution.\n\n"
        + table.to_markdown(index=False, floatfmt=".3f")
        + "\n",
    )
    shown = min(32, e.samples)
    grid = torch.cat([samples["base"][:shown], samples["fine_tuned"][:shown]])
    save_image_grid(smk.output.figure, to_uint8(grid), ncol=shown, scale=4)
    print(table.to_string(index=False))


def run_pipeline_transitions(smk: Any) -> None:
    """Rule pipeline_transitions: the pretrained pipeline's trajectories completed from each grid
    step and read by a CLIP zero-shot detector -> {outdir}/pipeline_transitions/curves.csv,
    intervals.csv, tables/pipeline_transitions.md, figures/pipeline_transitions.png
    (stepattr.stable_diffusion.pretrained_curves)."""
    torch.set_num_threads(smk.threads)
    p = smk.params
    cfg = PipelineTransitionsSettings.from_config(p.transitions)
    device = resolve_device(p.device)
    pipeline_dir = Path(smk.input.pipeline[0]).parent  # inputs: the folders' index / config files
    clip_dir = Path(smk.input.clip[0]).parent
    pipeline = load_pipeline(pipeline_dir, device)
    check_prompts(pipeline, cfg.prompts)
    detector = load_zero_shot(clip_dir, list(cfg.features), device)
    curves, images = pipeline_transitions(pipeline, detector, cfg, p.grid, progress=True)
    intervals = interval_rows(curves)
    save_csv(smk.output.curves, curves)
    save_csv(smk.output.intervals, intervals)
    summary = summary_rows(intervals)
    save_text(
        smk.output.markdown,
        f"Feature transitions of the pretrained pipeline ({describe_config(p.provenance)}): "
        f"{cfg.trajectories} trajectories per prompt, DDPM ancestral sampling in "
        f"{cfg.inference_steps} steps at guidance {cfg.guidance} (pipeline.transitions.seed "
        f"{cfg.seed}); from each grid step's x_t, {cfg.completions} completions, decoded and "
        f"read by {detector.name} (zero-shot choice among each feature's prompts). "
        "P(feature | x_t) "
        "is the share of completions whose choice is the trajectory's own final choice; the "
        "steepest-rise interval is the adjacent pair of grid steps with the largest increase. "
        f"Inputs: {pipeline_dir}, {clip_dir}; per-step curves with 95% Wilson intervals in "
        f"{smk.output.curves}.\n\n"
        + summary.to_markdown(index=False, floatfmt=".3f")
        + "\n\n## Per trajectory\n\n"
        + intervals.to_markdown(index=False, floatfmt=".3f")
        + "\n",
    )
    figure = pipeline_transitions_figure(
        curves,
        intervals,
        images["final"].numpy(),
        images["x_t"].numpy(),
        cfg.figure_trajectories,
    )
    with atomic_path(smk.output.figure) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
    print(summary.to_string(index=False))
