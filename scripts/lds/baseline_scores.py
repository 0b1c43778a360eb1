"""Rules baseline_scores, embedding_scores: a baseline's scores (TRAK format), index, meta."""

from stepattr.workflow.script import start

smk = start(snakemake)  # noqa: F821 (injected by Snakemake's script directive)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.core.diffusion import resolve_device  # noqa: E402
from stepattr.core.images import load_split  # noqa: E402
from stepattr.lds.jobs import baseline_scores, image_embedder  # noqa: E402
from stepattr.targets.sets import load_target_sets  # noqa: E402
from stepattr.trak.storage import save_scores  # noqa: E402

torch.set_num_threads(smk.threads)
name = smk.wildcards.get("baseline", "embedding")
targets = load_target_sets(smk.input.targets, smk.params.target_sets)
meta = {"method": name, "grid": targets.grid, "lambda": None, **smk.params.provenance}
embed = feature_paths = None
if name == "random":
    meta["seed"] = smk.params.seed
if name == "embedding":
    classifier_dir = Path(smk.input.classifier[0]).parent
    _, _, class_names = load_split(smk.input.train)
    device = resolve_device(smk.params.device)
    embed, meta["embedder"] = image_embedder(smk.params.clip, classifier_dir, class_names, device)
    meta["models"] = [str(classifier_dir)]
if name == "graddot":
    feature_paths = (
        smk.input.train_features,
        smk.input.target_features,
        smk.input.whole_loss_features,
    )
    meta["models"] = smk.params.models
    meta["features"] = list(smk.input.train_features)
scores, whole_loss = baseline_scores(
    name, targets, smk.input.train, smk.params.seed, embed, feature_paths
)
print(f"{name}: scores {scores.shape}, mean {scores.mean():.4g}, std {scores.std():.4g}")
save_scores(dict(smk.output.items()), scores, targets.index(), meta, whole_loss)
