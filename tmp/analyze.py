"""Offline ablations on an LDS run: ensemble size, M, lambda (chosen on held-out subsets)."""
import sys, glob, json
import numpy as np, pandas as pd
from stepattr.trak.storage import load_method_features
from stepattr.trak.scores import trak_scores_multi
from stepattr.subset_outputs import load_subset_outputs
from stepattr.lds import lds_per_target, bootstrap_lds, predicted_outputs, select_lambda
from stepattr.target_sets import TargetSets

out = sys.argv[1]
method = sys.argv[2] if len(sys.argv) > 2 else "trak"
sets = ["generated", "validation"]
models = sorted(p.split("/")[-2] for p in glob.glob(f"{out}/features/{method}/full_*/train.npy"))
tr, tg, _ = load_method_features([f"{out}/features/{method}/{m}/train.npy" for m in models],
                                 [[f"{out}/features/{method}/{m}/{s}.npy" for s in sets] for m in models])
paths = sorted(glob.glob(f"{out}/lds/outputs/subset_*.npz"))
ids = [p.split("/")[-1][:-4] for p in paths]
rows, f, dtrak = load_subset_outputs(paths, ids)
masks_all = np.load(f"{out}/subsets/masks.npy")
table = pd.read_csv(f"{out}/subsets/subsets.csv")
scored = set(table.row[table.role == "scored"])
sc = np.array([r in scored for r in rows]); ho = ~sc
M = masks_all[rows]
lams = [1e-2, 1e-1, 1, 10, 100, 1e3, 1e4, 1e5]
def summarize(scores, label, msk=M[sc], ff=f[..., sc]):
    rho = lds_per_target(scores, msk, ff)  # (m, G)
    per_step = np.nanmean(rho, axis=0)
    cis = []
    for g in range(ff.shape[1]):
        pred = predicted_outputs(msk, scores[:, g]); r = bootstrap_lds(pred, -ff[:, g], 300, 0)
        cis.append((r.ci_high - r.ci_low) / 2 if True else 0)
        cis[-1] = (r.lds, r.ci_low, r.ci_high)
    excl = sum(lo > 0 for _, lo, _ in cis)
    print(f"{label:40s} mean {np.nanmean(per_step):+.3f} | " + " ".join(f"{v:+.2f}" for v in per_step)
          + f" | steps CI>0: {excl}, mean halfwidth {np.mean([(h-l)/2 for _,l,h in cis]):.3f}", flush=True)
for C in [1, 2, 4]:
    if C > len(models): continue
    allsc = trak_scores_multi(tr[:C], tg[:C], lams)
    lam, per = select_lambda(lams, lambda l: allsc[lams.index(l)], M[ho], f[..., ho])
    print(f"C={C} heldout per-lambda:", {k: round(v, 3) for k, v in per.items()}, "chosen", lam)
    summarize(allsc[lams.index(lam)], f"{method} C={C} lam={lam}")
for b in ["pixel", "embedding", "graddot", "random"]:
    try:
        s = np.load(f"{out}/scores/{b}/scores.npy")
        summarize(s, b)
    except FileNotFoundError:
        pass
