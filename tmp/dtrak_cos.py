"""Per step: mean cosine between targets' features (a shared direction?) for trak and dtrak,
and the mean cosine between a target's trak and dtrak features."""
import sys, numpy as np
out = sys.argv[1]
for m in ["full_0", "full_1"]:
    a = np.concatenate([np.load(f"{out}/features/trak/{m}/{s}.npy") for s in ["generated", "validation"]])
    b = np.concatenate([np.load(f"{out}/features/dtrak/{m}/{s}.npy") for s in ["generated", "validation"]])
    def unit(x): return x / np.linalg.norm(x, axis=-1, keepdims=True)
    ua, ub = unit(a), unit(b)
    print(m, "step  mean|cos| trak-trak  dtrak-dtrak  cos(trak,dtrak)  norm trak  norm dtrak")
    for g in range(a.shape[1]):
        ca = ua[:, g] @ ua[:, g].T; cb = ub[:, g] @ ub[:, g].T
        off = ~np.eye(len(ca), dtype=bool)
        print(g, f"{np.abs(ca[off]).mean():.3f} {cb[off].mean():+.3f} {np.mean(np.sum(ua[:, g]*ub[:, g], -1)):+.3f} {np.linalg.norm(a[:, g], axis=-1).mean():.3g} {np.linalg.norm(b[:, g], axis=-1).mean():.3g}")
