"""Milliseconds per SeqSleepNet training step: recurrent-BN epoch encoder vs plain ``nn.LSTM``.

Batch 32 sequences x L = 20 epochs x 29 x 129 (the paper's setting), Adam, full Eq. 2 loss.
The variants are measured interleaved in one process (round-robin), so load from other
processes on a shared machine hits them alike; the median over rounds is reported.

    python benchmarks/sleep_tsr_train_step.py [--device cuda] [--rounds 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from losses.sleep_tsr import TemporalSmoothnessLoss
from models.sleep_tsr import SeqSleepNet

VARIANTS = {
    "recurrent-BN (fused)": {"epoch_rnn": "bn_lstm"},
    "plain nn.LSTM": {"epoch_rnn": "lstm"},
    "recurrent-BN (autograd loop)": {"epoch_rnn": "bn_lstm", "fused": False},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--skip-loop", action="store_true", help="skip the autograd-loop variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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
        if hasattr(net.epoch_rnn, "fused"):
            net.epoch_rnn.fused = fused
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        runs[name] = (net, opt, [])

    def step(net: SeqSleepNet, opt: torch.optim.Optimizer) -> float:
        _sync(device)
        t0 = time.perf_counter()
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
    base = statistics.median(runs["plain nn.LSTM"][2])
    print(
        f"device={device} threads={args.threads} batch={args.batch}x{args.seq_len} rounds={args.rounds}"
    )
    for name, (_, _, times) in runs.items():
        med = statistics.median(times)
        print(
            f"{name:30s} {med:8.1f} ms/step  (min {min(times):.1f})  ratio vs plain {med / base:.2f}x"
        )


if __name__ == "__main__":
    main()
