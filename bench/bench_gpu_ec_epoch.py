"""One EC unlearning epoch on a CIFAR-10-sized problem with the CIFAR-stem ResNet-18.

    python bench/bench_gpu_ec_epoch.py [--device cuda] [--forget 5000] [--retain-per-forget 2] [--batch 256]

Synthetic data (50,000 random 3x32x32 images, 10 classes; class 0 is the forget set) so it runs on a
GPU machine with no data set on disk. Runs the engine's own loop and EC method, first in fp32 and
then with the CUDA defaults (bf16 autocast + channels-last), and prints images/s for both and
their ratio. On a CPU it runs a much smaller problem (--small) so the script itself can be checked.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine import training  # noqa: E402
from engine.config import make_config  # noqa: E402
from engine.methods import build_method  # noqa: E402
from engine.methods.ec.aux import AuxModules  # noqa: E402
from engine.models import create_model, point_channels  # noqa: E402
from engine.training import LoopState, run_loop  # noqa: E402


def one_epoch(device, n, n_forget, batch, rpf, amp: bool, channels_last: bool) -> tuple[float, int]:
    torch.manual_seed(0)
    x = torch.randn(n, 3, 32, 32, device=device)
    y = torch.arange(n, device=device) % 10
    forget = torch.nonzero(y == 0).squeeze(1)[:n_forget]
    retain = torch.nonzero(y != 0).squeeze(1)
    cfg = make_config("cifar10", {"methods": {"ec": {"batch_size": batch, "epochs": 1}},
                                  "ec": {"retain_per_forget": rpf}})
    model = create_model("resnet18", 10, 3, 32).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    aux = AuxModules(model.supervision_points, point_channels(model, x[:2]), 10, 128).to(device)
    state = LoopState(model=model, x=x, y=y, forget_idx=forget, retain_idx=retain, num_classes=10,
                      device=device, original=copy.deepcopy(model).eval(), extra={"aux": aux})
    method, _ = build_method(cfg, "ec")
    original_autocast = training.autocast
    if not amp:
        training.autocast = lambda d: torch.autocast(d.type, enabled=False)
    try:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        run_loop(method, state, epochs=1, lr=0.01, momentum=0.9, weight_decay=5e-4)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    finally:
        training.autocast = original_autocast
    steps = method.steps_per_epoch(state)
    return seconds, steps * 2 * batch  # each step: one forget and one retain batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--forget", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--retain-per-forget", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="tiny problem (CPU check of the script)")
    args = ap.parse_args()
    device = torch.device(args.device)
    n, nf, batch = (50_000, args.forget, args.batch) if not args.small else (2_000, 64, 32)
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}")
        one_epoch(device, 5_000, 256, batch, 1, True, True)  # warm-up (cuDNN autotune, allocator)
    rows = []
    for label, amp, cl in (("fp32", False, False), ("bf16 + channels-last", True, device.type == "cuda")):
        if device.type != "cuda" and amp:
            label = "cpu default (autocast off)"
        s, imgs = one_epoch(device, n, nf, batch, args.retain_per_forget, amp, cl)
        rows.append((label, s, imgs / s))
        print(f"{label:<28} epoch {s:8.2f} s   {imgs / s:10.0f} images/s   ({imgs} images through the model)")
    print(f"speed-up of the default over fp32: {rows[1][2] / rows[0][2]:.2f}x")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
