"""Rule encode_text: the frozen encoder's states of every training caption -> states.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.text.jobs import run_encode_text  # noqa: E402

run_encode_text(smk)
