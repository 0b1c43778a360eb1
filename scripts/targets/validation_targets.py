"""Rule validation_targets: real test images as targets -> {TARGETS}/validation.npz."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from stepattr.core.diffusion import Schedule  # noqa: E402
from stepattr.core.images import load_split  # noqa: E402
from stepattr.targets.generate import save_targets, validation_targets  # noqa: E402

p = smk.params
images, labels, _ = load_split(smk.input.test)
arrays = validation_targets(
    images, labels, p.num_validation, list(p.grid), Schedule.from_config(p.diffusion), p.seed,
    first_id=p.first_id,
)  # fmt: skip
save_targets(smk.output.targets, arrays)
