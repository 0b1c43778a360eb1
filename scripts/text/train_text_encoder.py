"""Rule train_text_encoder: tokenizer + small CLIP on the captions -> {OUT}/text_encoder/."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.text.jobs import run_train_text_encoder  # noqa: E402

run_train_text_encoder(smk)
