import torch, numpy as np, time, sys
sys.path.insert(0, "/work/exp/tests")
from tiny_models import TINY_UNET
from stepattr.diffusion import Schedule
from stepattr.training import DiffusionTrainer
from stepattr.batched_training import BatchedDiffusionTrainer
torch.set_num_threads(1)
sched = Schedule(1000, 1e-4, 0.02) if False else Schedule.from_config({"num_train_timesteps":1000,"beta_start":1e-4,"beta_end":0.02})
rng = np.random.default_rng(0)
imgs = torch.rand(40, 1, 8, 8) * 2 - 1
keep = torch.from_numpy(rng.random((3, 40)) < 0.5)
keep[2] = False; keep[2, :3] = True   # sparse model: some batches keep nothing
cfg = dict(batch_size=8, lr=0.01, warmup_steps=3, weight_decay=0.1, ema_decay=0.9, grad_clip=0.05, compile=False)
dev = torch.device("cpu")
b = BatchedDiffusionTrainer(imgs, TINY_UNET, cfg, sched, 5, dev, keep)
singles = [DiffusionTrainer(imgs, TINY_UNET, cfg, sched, 5, dev, keep[g]) for g in range(3)]
for s in range(int(sys.argv[1])):
    lb = b.train_step()
    ls = [tr.train_step() for tr in singles]
print("losses", lb, ls)
for g, tr in enumerate(singles):
    sd = dict(tr.unet.named_parameters()); ema = dict(tr.ema.named_parameters())
    dp = max((b.params[n][g] - sd[n]).abs().max().item() for n in b.names)
    de = max((b.ema[n][g] - ema[n]).abs().max().item() for n in b.names)
    scale = max(sd[n].abs().max().item() for n in b.names)
    print(g, "max param diff", dp, "ema diff", de, "scale", scale, "adam steps", b.adam_steps[g].item())
