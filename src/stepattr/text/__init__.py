"""Stage text (the text-to-image family): the tokenizer, the frozen text encoder, its cache.

Rules (rules/text.smk): ``train_text_encoder`` (where ``text_encoder.pretrained`` is null: a
BPE tokenizer learned on the training captions and a small CLIP trained contrastively on the
captioned images), ``encode_text`` (the encoder's hidden states of every distinct training
caption, once). Scripts: scripts/text/. Outputs: ``{outdir}/text_encoder/`` (``tokenizer/``,
``text_encoder/``, ``clip/`` in the folder layout diffusers pipelines load, ``loss.csv``,
``metrics.json``), ``{outdir}/text/states.npz``. Config: ``text_encoder``.

Module: ``encoder`` (tokenizer, CLIP, training, loading, token ids with the context check, the
state cache's writer and reader).
"""
