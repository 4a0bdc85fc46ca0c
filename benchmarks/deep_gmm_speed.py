"""GMM layer vs the softmax layer it replaces: forward + backward time and peak memory, one core.

Compared side by side at the paper's scale (batch 200, 2560-wide input, 2432 states, GMM(272, 5)):
  softmax   Linear(2560, 2432) + softmax CE (the DNN's output layer)
  gmm       bottleneck Linear(2560, 272) + fused GMM layer + online prior posterior + CE (ours,
            the default on CPU: C++ element-wise stages, built on first use)
  gmm_eager the same layer with its torch-op element-wise stages (the fallback without a compiler)
  two_mm    the same maths as plain autograd ops (two matmuls, no fused backward)
  naive     the broadcast (B, S, g, d) form, at a reduced batch (it needs GBs at batch 200)
Every variant back-propagates into its input, as it would as the last layer of a deep network.
Steps are timed round-robin (median) so that load from other processes hits every variant alike.
Peak memory is the largest amount of live tensor storage during one step (from the profiler's
allocation records), parameters included; grads are set to None before the step so they count.

    python benchmarks/deep_gmm_speed.py [--repeats 20] [--naive-batch 8]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from models.deep_gmm import GMMLayer, OnlineLogPrior, naive_gmm_nll


def two_matmul_nll(x, mu, log_var, weight_logits, var_floor):
    """Plain-autograd expansion of the Mahalanobis term (what a first implementation looks like)."""
    states, comps = weight_logits.shape
    lv = log_var.clamp_min(math.log(var_floor))
    prec = torch.exp(-lv)
    const = (mu * mu * prec).sum(-1) + lv.sum(-1) + x.shape[1] * math.log(2 * math.pi)
    log_w = torch.log_softmax(weight_logits, -1).reshape(-1)
    comp = log_w - 0.5 * const - 0.5 * (x * x) @ prec.t() + x @ (mu * prec).t()
    return -torch.logsumexp(comp.view(x.shape[0], states, comps), -1)


class GMMHead(nn.Module):
    """Bottleneck + GMM layer + prior posterior, with a swappable likelihood implementation."""

    def __init__(self, in_features, states, dim, comps, impl: str):
        super().__init__()
        kernels = "eager" if impl == "gmm_eager" else "auto"
        self.layer = GMMLayer(in_features, states, dim, comps, var_floor=1e-3, kernels=kernels)
        self.prior = OnlineLogPrior(states)
        self.impl = impl

    def forward(self, h):
        if self.impl in ("gmm", "gmm_eager"):
            nll = self.layer(h)
        else:
            fn = two_matmul_nll if self.impl == "two_mm" else naive_gmm_nll
            x = self.layer.bottleneck(h)
            mu, lv, w = self.layer.gmm_parameters()
            nll = fn(x, mu, lv, w, self.layer.var_floor)
        return self.prior() - nll


def make_step(model: nn.Module, batch: int, in_features: int, states: int) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(batch, in_features, generator=gen).requires_grad_()
    y = torch.randint(0, states, (batch,), generator=gen)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        h.grad = None
        loss = F.cross_entropy(model(h), y)
        if isinstance(model, GMMHead):
            loss = loss + model.prior.loss(y)
        loss.backward()

    return step


def time_interleaved(
    steps: dict[str, Callable[[], None]], repeats: dict[str, int], warmup: int = 2
) -> dict[str, float]:
    """Median seconds per step, variants timed round-robin so a shared machine's load hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(max(repeats.values())):
        for name, step in steps.items():
            if r < repeats[name]:
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def peak_step_bytes(step: Callable[[], None]) -> int:
    """Peak of (allocated - freed) tensor bytes during one step, from the profiler's memory records."""
    step()  # warm caches so the record is of a steady-state step
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--in-features", type=int, default=2560)
    ap.add_argument("--states", type=int, default=2432)
    ap.add_argument("--dim", type=int, default=272)
    ap.add_argument("--components", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument(
        "--naive-batch", type=int, default=8, help="batch for the broadcast form (0 skips)"
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    variants: list[tuple[str, nn.Module, int]] = [
        ("softmax", nn.Linear(args.in_features, args.states), args.batch),
        (
            "gmm",
            GMMHead(args.in_features, args.states, args.dim, args.components, "gmm"),
            args.batch,
        ),
        (
            "gmm_eager",
            GMMHead(args.in_features, args.states, args.dim, args.components, "gmm_eager"),
            args.batch,
        ),
        (
            "two_mm",
            GMMHead(args.in_features, args.states, args.dim, args.components, "two_mm"),
            args.batch,
        ),
    ]
    if args.naive_batch:
        variants.append(
            (
                "naive",
                GMMHead(args.in_features, args.states, args.dim, args.components, "naive"),
                args.naive_batch,
            )
        )
    print(
        f"batch {args.batch}, input {args.in_features}, states {args.states}, "
        f"GMM({args.dim}, {args.components}), threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    steps = {
        name: make_step(model, batch, args.in_features, args.states)
        for name, model, batch in variants
    }
    repeats = {
        name: args.repeats if name != "naive" else max(3, args.repeats // 5) for name in steps
    }
    t0 = time.perf_counter()
    steps["gmm"]()  # the first call builds (or loads) the C++ kernels
    print(f"gmm first step (builds or loads its C++ kernels): {time.perf_counter() - t0:.1f} s")
    medians = time_interleaved(steps, repeats)
    rows = [
        (name, batch, medians[name], peak_step_bytes(steps[name]) + param_bytes(model))
        for name, model, batch in variants
    ]
    base_t, base_m = rows[0][2], rows[0][3]
    print(f"{'variant':<9} {'batch':>5} {'ms/step':>9} {'x time':>7} {'peak MiB':>9} {'x mem':>6}")
    for name, batch, t, peak in rows:
        note = (
            ""
            if batch == args.batch
            else f"   (batch {batch}; ~{t * args.batch / batch * 1e3:.0f} ms at {args.batch})"
        )
        print(
            f"{name:<9} {batch:>5} {t * 1e3:>9.1f} {t / base_t:>7.2f} {peak / 2**20:>9.1f} {peak / base_m:>6.2f}{note}"
        )


if __name__ == "__main__":
    main()
