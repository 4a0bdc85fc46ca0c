"""Milliseconds per DeepConvLSTM training step at the paper's size, and the study it implies.

The paper's best mcfly model, Conv(54)-BN-LSTM(29)-LSTM(95)-LSTM(94)-LSTM(46)-Dropout-Dense(3),
on batch 64 windows of 203 db1 wavelet coefficients x 6 IMU channels (acc + gyr), Adam with the
paper's learning rate and the Keras-style L2 term on conv and dense kernels, as the training
module computes it. The median step is printed with the machine, then the projected time of the
split study (10 jobs x 25 epochs of GSTRIDE) on the device used.

    python benchmarks/frailty_train_step.py [--device cuda] [--amp bf16] [--steps 20] [--json F]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's code

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
from models.frailty import DeepConvLSTM  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--time", type=int, default=203, help="wavelet coefficients per window")
    ap.add_argument("--channels", type=int, default=6)
    args = ap.parse_args()
    device = resolve_device(ap, args)
    torch.manual_seed(0)
    net = DeepConvLSTM(
        in_channels=args.channels, num_classes=3, conv_filters=[54], lstm_units=[29, 95, 94, 46]
    ).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=0.0268)
    x = torch.randn(args.batch, args.time, args.channels, device=device)
    y = torch.randint(0, 3, (args.batch,), device=device)

    def step() -> float:
        sync(device)
        t0 = time.perf_counter()
        with autocast(device, args.amp):
            loss = F.cross_entropy(net(x), y) + 4e-4 * net.l2_penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        return time.perf_counter() - t0

    for _ in range(3):
        step()
    times = [step() for _ in range(args.steps)]
    med = statistics.median(times)
    info = machine(device)
    print(describe(info))
    params = sum(p.numel() for p in net.parameters())
    print(
        f"DeepConvLSTM Conv(54)-LSTM(29,95,94,46), {params:,} parameters, batch {args.batch} x "
        f"{args.time} x {args.channels}, amp {args.amp}: {med * 1e3:.1f} ms/step "
        f"(min {min(times) * 1e3:.1f}, {args.steps} steps)"
    )
    study = STUDIES["frailty"]
    print(study.line(med, info["device"]))
    figures = {
        "ms_per_step": round(med * 1e3, 2),
        "parameters": params,
        "batch": args.batch,
        "amp": args.amp,
        "projected_study_hours": round(study.projected_hours(med), 2),
    }
    write_record(args.json, "frailty_train_step", info, figures)


if __name__ == "__main__":
    main()
