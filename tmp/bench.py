import torch, numpy as np, time, sys, yaml
from stepattr.diffusion import Schedule
from stepattr.training import DiffusionTrainer
from stepattr.batched_training import BatchedDiffusionTrainer
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
cfg = yaml.safe_load(open("/work/exp/config/config.yaml"))
sched = Schedule.from_config(cfg["diffusion"])
imgs = torch.rand(5000, 1, 16, 16) * 2 - 1
rng = np.random.default_rng(0)
dev = torch.device("cpu")
tc = dict(cfg["train"], compile=False)
steps = 6
for G in [int(g) for g in sys.argv[2].split(",")]:
    keep = torch.from_numpy(rng.random((G, 5000)) < 0.5)
    singles = DiffusionTrainer(imgs, cfg["model"], tc, sched, 0, dev, keep[0])
    for _ in range(2): singles.train_step()
    t0 = time.perf_counter()
    for _ in range(steps): singles.train_step()
    ts = (time.perf_counter() - t0) / steps
    b = BatchedDiffusionTrainer(imgs, cfg["model"], tc, sched, 0, dev, keep)
    for _ in range(2): b.train_step()
    t0 = time.perf_counter()
    for _ in range(steps): b.train_step()
    tb = (time.perf_counter() - t0) / steps
    print(f"G={G}: single {ts*1e3:.0f} ms/step/model, batched {tb*1e3:.0f} ms/step = {tb/G*1e3:.0f} ms/model-step, speedup {ts*G/tb:.2f}x", flush=True)
