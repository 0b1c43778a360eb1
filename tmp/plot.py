import numpy as np, pandas as pd
from stepattr.lds_report import plot_lds
rng=np.random.default_rng(0); rows=[]
for m in ["trak","dtrak","trak_factored","dtrak_factored","random","pixel","embedding","graddot"]:
    for s in range(900,-1,-100):
        v=rng.normal(0.05,0.1); rows.append(dict(method=m,target_set="all",step=s,lds=v,ci_low=v-0.2,ci_high=v+0.2))
plot_lds(pd.DataFrame(rows),"/tmp/lds_test.png",{"embedding":"embedding (classifier penultimate layer)"},"LDS per step; config: config/config.yaml")
