"""The Stable Diffusion stage: diffusers ``StableDiffusionPipeline`` folders, written and read;
what a LoRA fine-tune changes; the pretrained pipeline's own feature curves.

Rules (rules/stable_diffusion.smk):

- ``export_pipeline`` (the text-to-image family) saves full_0's conditional UNet, the frozen
  autoencoder (with the latent scaling factor the UNet was trained at), the tokenizer and
  text encoder, and the DDPM schedule as a pipeline folder (``save_pretrained``), the form the
  Stable Diffusion family loads.
- ``export_lora`` (the Stable Diffusion family) writes full_0's adapters in diffusers' LoRA
  format (``load_lora_weights`` on the base pipeline), checked on write to predict as full_0.
- ``fine_tune_effect`` (the Stable Diffusion family) samples the pipeline's base UNet and
  full_0 (base + LoRA) from the same noises and compares their label distributions.
- ``pipeline_transitions`` (the Stable Diffusion family, where ``pipeline.transitions.clip``
  is set) measures when the *pretrained* pipeline's own trajectories commit to configured
  features, read by a CLIP zero-shot detector.

Scripts: scripts/stable_diffusion/. Outputs: ``{outdir}/pipeline/`` (``lora/`` in the Stable
Diffusion family), ``{outdir}/pipeline_transitions/``,
``tables/{fine_tune_effect,pipeline_transitions}.md`` and their figures. Config: ``pipeline``.

Modules: ``export`` (assemble, save, load back naming a missing component), ``effect``,
``pretrained_curves`` (the pretrained pipeline's sampler, its feature
curves and intervals), ``figure``.
"""
