"""Milliseconds per SeqSleepNet training step: both encoders recurrent-BN vs both plain LSTMs.

The whole network (filterbank, epoch biLSTM, attention, sequence biLSTM, classifier) at batch
32 sequences x L = 20 epochs x 29 x 129 (the paper's setting), Adam, full Eq. 2 loss. The
default SeqSleepNet (recurrent-BN in the epoch AND the sequence encoder, as the reference) is
compared with the same network built on ``nn.LSTM`` (oneDNN/MKL kernels on CPU, cuDNN on GPU).
Variants run interleaved in one process (round-robin), so load from other processes on a
shared machine hits them alike; the median over rounds is reported with the CPU model, thread
count, BLAS/oneDNN build and the denormal setting, because the ratio depends on all of them.
Target: recurrent-BN <= 1.5x plain.

    python benchmarks/sleep_tsr_train_step.py [--device cuda] [--amp bf16] [--rounds 10] [--json F]

It ends with the projected time of the paper's gamma study (700 LOSO jobs) on the device used.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's code

from benchmarks.common import (
    add_common_args,
    autocast,
    describe,
    machine,
    resolve_device,
    write_record,
)
from benchmarks.studies import STUDIES
from losses.sleep_tsr import TemporalSmoothnessLoss
from models.sleep_tsr import SeqSleepNet

VARIANTS = {
    "recurrent-BN x2 (fused)": {"epoch_rnn": "bn_lstm", "seq_rnn": "bn_lstm"},
    "plain nn.LSTM x2": {"epoch_rnn": "lstm", "seq_rnn": "lstm"},
    "recurrent-BN x2 (autograd loop)": {
        "epoch_rnn": "bn_lstm",
        "seq_rnn": "bn_lstm",
        "fused": False,
    },
}
BASELINE = "plain nn.LSTM x2"


def machine_info(device: torch.device, threads: int, flush: bool) -> list[str]:
    """What the ratio depends on: CPU/GPU model, threads, BLAS/oneDNN, denormals."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cfg = torch.__config__.show()
    build = ", ".join(
        m.group(0) for key in ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP")
        if (m := re.search(rf"{key}=[^,\s]+", cfg))
    )  # fmt: skip
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v[\d.]+", cfg)
    isa = torch.backends.cpu.get_cpu_capability()
    lines = [
        f"cpu: {cpu} ({os.cpu_count()} logical cores, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})",
        f"torch {torch.__version__}, threads={threads}, cpu capability={isa}, "
        f"mkldnn(oneDNN)={torch.backends.mkldnn.is_available()}, "
        f"mkl={torch.backends.mkl.is_available()}, {build}",
        onednn.group(0).strip() if onednn else "oneDNN version: not reported",
        f"flush denormals: {'on' if flush else 'off'}",
    ]
    if device.type == "cuda":
        lines.append(
            f"gpu: {torch.cuda.get_device_name(device)}, cudnn {torch.backends.cudnn.version()}"
        )
    return lines


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--skip-loop", action="store_true", help="skip the autograd-loop variant")
    parser.add_argument(
        "--flush-denormal", choices=("on", "off"), default="on",
        help="flush denormal floats to zero (as training does; denormals slow x86 FMA units)",
    )  # fmt: skip
    args = parser.parse_args()
    device = resolve_device(parser, args)
    flush = torch.set_flush_denormal(args.flush_denormal == "on") and args.flush_denormal == "on"
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.seq_len, 29, 129, device=device)
    y = torch.randint(0, 5, (args.batch, args.seq_len), device=device)
    loss_fn = TemporalSmoothnessLoss(lambda_l2=1e-3, gamma=1e-4)
    runs = {}
    for name, kw in VARIANTS.items():
        if args.skip_loop and kw.get("fused") is False:
            continue
        fused = kw.pop("fused", True)
        net = SeqSleepNet(**kw).to(device)
        for rnn in (net.epoch_rnn, net.seq_rnn):
            if hasattr(rnn, "fused"):
                rnn.fused = fused
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        runs[name] = (net, opt, [])

    def step(net: SeqSleepNet, opt: torch.optim.Optimizer) -> float:
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, args.amp):
            out = loss_fn(net(x), y, net.l2_parameters())
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        _sync(device)
        return (time.perf_counter() - t0) * 1000

    for r in range(args.warmup + args.rounds):
        for net, opt, times in runs.values():
            ms = step(net, opt)
            if r >= args.warmup:
                times.append(ms)
    base = statistics.median(runs[BASELINE][2])
    info = machine(device)
    print(describe(info))
    print("\n".join(machine_info(device, args.threads, flush)))
    print(
        f"device={device} amp={args.amp} batch={args.batch}x{args.seq_len} "
        f"rounds={args.rounds} (interleaved)"
    )
    figures = {}
    for name, (_, _, times) in runs.items():
        med = statistics.median(times)
        figures[name] = {"ms_per_step": round(med, 2), "ratio_vs_plain": round(med / base, 3)}
        print(
            f"{name:30s} {med:8.1f} ms/step  (min {min(times):.1f})  ratio vs plain {med / base:.2f}x"
        )
    default = next(iter(runs))  # the default network (recurrent-BN, fused)
    study = STUDIES["sleep_tsr"]
    seconds = figures[default]["ms_per_step"] / 1e3
    print(study.line(seconds, info["device"]))
    figures["projected_study_hours"] = round(study.projected_hours(seconds), 2)
    figures["amp"] = args.amp
    write_record(args.json, "sleep_tsr_train_step", info, figures)


if __name__ == "__main__":
    main()
