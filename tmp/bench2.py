import torch, time, yaml, torch.nn.functional as F
from stepattr.diffusion import Schedule, build_unet, add_noise
torch.set_num_threads(1)
cfg = yaml.safe_load(open("/work/exp/config/config.yaml"))
ac = Schedule.from_config(cfg["diffusion"]).alphas_cumprod.float()
def run(variant, steps=15, B=128):
    torch.manual_seed(0)
    unet = build_unet(cfg["model"], 16, 1).train()
    if "cl" in variant: unet = unet.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    x0 = torch.rand(B, 1, 16, 16) * 2 - 1
    res = []
    for i in range(steps + 3):
        if i == 3: c = time.process_time(); w = time.perf_counter()
        t = torch.randint(0, 1000, (B,)); n = torch.randn_like(x0)
        xt = add_noise(x0, n, t, ac)
        if "cl" in variant: xt = xt.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in variant):
            pred = unet(xt, t).sample
        loss = F.mse_loss(pred.float(), n); opt.zero_grad(); loss.backward(); opt.step()
    return steps * B / (time.process_time() - c), steps * B / (time.perf_counter() - w)
for rep in range(2):
    for v in ["fp32", "bf16", "fp32_cl", "bf16_cl"]:
        cpu, wall = run(v)
        print(f"{v:8s} {cpu:6.0f} img/CPU-s  {wall:6.0f} img/wall-s", flush=True)
