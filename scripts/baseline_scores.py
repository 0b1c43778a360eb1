"""Rules baseline_scores, embedding_scores: a baseline's scores (TRAK format), index, meta."""

import sys

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
sys.stderr = sys.stdout = open(smk.log[0], "w", buffering=1)

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from stepattr.diffusion import resolve_device  # noqa: E402
from stepattr.images import load_split  # noqa: E402
from stepattr.io import save_csv, save_json, save_npy  # noqa: E402
from stepattr.lds_workflow import baseline_scores, image_embedder, load_features  # noqa: E402
from stepattr.target_sets import load_target_sets  # noqa: E402

torch.set_num_threads(smk.threads)
name = smk.wildcards.get("baseline", "embedding")
targets = load_target_sets(smk.input.targets, smk.params.target_sets)
meta = {"method": name, "grid": targets.grid, "lambda": None, **smk.params.provenance}
embed = features = None
if name == "random":
    meta["seed"] = smk.params.seed
if name == "embedding":
    classifier_dir = Path(smk.input.classifier[0]).parent
    _, _, class_names = load_split(smk.input.train)
    device = resolve_device(smk.params.device)
    embed, meta["embedder"] = image_embedder(smk.params.clip, classifier_dir, class_names, device)
    meta["models"] = [str(classifier_dir)]
if name == "graddot":
    features = load_features(smk.input.train_features, smk.input.target_features)
    meta["models"] = smk.params.models
    meta["features"] = list(smk.input.train_features)
scores = baseline_scores(name, targets, smk.input.train, smk.params.seed, embed, features)
print(f"{name}: scores {scores.shape}, mean {scores.mean():.4g}, std {scores.std():.4g}")
save_npy(smk.output.scores, scores)
save_csv(smk.output.index, targets.index())
save_json(smk.output.meta, meta)
