"""Stage pipeline (the text-to-image family): its trained parts as one diffusers pipeline.

Rule (rules/pipeline.smk): ``export_pipeline`` saves full_0's conditional UNet, the frozen
autoencoder (with the latent scaling factor the UNet was trained at), the tokenizer and text
encoder, and the DDPM schedule as a ``StableDiffusionPipeline`` folder (``save_pretrained``),
the form the Stable Diffusion issue's stages load. Script: scripts/pipeline/. Output:
``{outdir}/pipeline/``. Config: none of its own (``autoencoder``, ``text_encoder``, ``diffusion``).

Module: ``export`` (assemble, save, and load back naming a missing component).
"""
