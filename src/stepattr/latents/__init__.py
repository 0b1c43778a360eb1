"""Stage latents (the text-to-image family): the frozen autoencoder and the latent cache.

Rules (rules/latents.smk): ``train_autoencoder`` (a small diffusers AutoencoderKL trained on
the training split where ``autoencoder.pretrained`` is null), ``encode_latents`` (every
image's scaled posterior-mean latent, once), ``autoencoder_report`` (reconstruction figure and
table: MSE, PSNR, the classifier's accuracy on reconstructions against originals). Scripts:
scripts/latents/. Outputs under ``{outdir}/autoencoder/`` (the model folder in diffusers
format, ``loss.csv``, ``metrics.json``), ``{outdir}/latents/latents.npz``,
``figures/autoencoder.png``, ``tables/autoencoder.{csv,md}``. Config: ``autoencoder``.

Modules: ``autoencoder`` (build, train, load, encode, the latent cache's writer and reader),
``report``.
"""
