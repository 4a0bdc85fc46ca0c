"""Pre-training throughput of MAE / SD-MAE at ViT-S/16 224 for mask ratios 0, 0.6 and 0.75.

The encoder sees only the visible patches, so a step at 0.75 must cost at most half a step
at 0 (issue target). One full optimiser step (forward, loss, backward, AdamW) is timed; every
ratio is measured in the same run, interleaved, after a warm-up step.

    python benchmarks/sd_mae_speed.py                       # CPU, 1 thread, batch 4
    python benchmarks/sd_mae_speed.py --device cuda --batch 256   # bf16 autocast on GPU

It ends with the projected time of the mask-ratio study's pre-training (7 jobs x 100 PCam
epochs) at the SD-MAE speed for mask 0.75; ``--json F`` also writes the figures to F.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    add_common_args,
    autocast,
    describe,
    machine,
    resolve_device,
    sync,
    write_record,
)
from benchmarks.studies import STUDIES  # noqa: E402
from experiments.sd_mae.objective import PretrainObjective  # noqa: E402
from models.sd_mae.mae import MaskedAutoencoder  # noqa: E402


def build(method: str, device: torch.device) -> tuple[MaskedAutoencoder, PretrainObjective]:
    mae = MaskedAutoencoder()  # ViT-S/16 encoder, 4 x 192 decoder, 224 px: the paper's model
    obj = PretrainObjective(method, mae.embed_dim, mae.decoder_dim)  # paper-sized heads
    return mae.to(device), obj.to(device)


def step(mae, obj, opt, x, ratio: float, amp: str) -> None:
    with autocast(x.device, amp):
        loss = obj(mae(x, mask_ratio=ratio))["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per ratio (after 1 warm-up)")
    ap.add_argument("--methods", default="mae,sdmae")
    ap.add_argument("--ratios", default="0,0.6,0.75")
    a = ap.parse_args()
    device = resolve_device(ap, a)
    torch.manual_seed(0)
    amp = a.amp
    info = machine(device)
    print(describe(info))
    ratios = [float(r) for r in a.ratios.split(",")]
    print(
        f"device={device} threads={a.threads} batch={a.batch} img=224 patch=16 "
        f"bf16_autocast={amp} torch={torch.__version__}"
    )
    print("| method | mask ratio | visible patches | s / step | images / s | step vs ratio 0 |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    figures: dict = {"batch": a.batch, "amp": amp}
    for method in a.methods.split(","):
        mae, obj = build(method, device)
        opt = torch.optim.AdamW(list(mae.parameters()) + list(obj.parameters()), lr=1e-4)
        x = torch.randn(a.batch, 3, 224, 224, device=device)
        times: dict[float, list[float]] = {r: [] for r in ratios}
        for r in ratios:  # warm-up (allocator, kernels) at every shape
            step(mae, obj, opt, x, r, amp)
        for _ in range(a.steps):  # interleaved, so machine load hits every ratio alike
            for r in ratios:
                sync(device)
                t0 = time.perf_counter()
                step(mae, obj, opt, x, r, amp)
                sync(device)
                times[r].append(time.perf_counter() - t0)
        base = min(times[ratios[0]])
        for r in ratios:
            t = min(times[r])
            vis = 196 - int(r * 196)
            print(f"| {method} | {r} | {vis} | {t:.3f} | {a.batch / t:.1f} | {t / base:.2f} |")
            figures[f"{method}@{r}"] = {
                "s_per_step": round(t, 4),
                "images_per_s": round(a.batch / t, 2),
                "vs_ratio0": round(t / base, 3),
            }
        if 0.75 in times and 0.0 in times:
            rel = min(times[0.75]) / min(times[0.0])
            verdicts.append(
                f"{method}: step(0.75)/step(0) = {rel:.2f} -> {'PASS' if rel <= 0.5 else 'FAIL'} (target <= 0.5)"
            )
    print()
    print("\n".join(verdicts))
    key = next((k for k in ("sdmae@0.75", "mae@0.75") if k in figures), None)
    if key:
        study = STUDIES["sd_mae"]
        per_image = 1.0 / figures[key]["images_per_s"]
        print(study.line(per_image, info["device"]) + f" [{key}, batch {a.batch}]")
        figures["projected_study_hours"] = round(study.projected_hours(per_image), 2)
    write_record(a.json, "sd_mae_speed", info, figures)


if __name__ == "__main__":
    main()
