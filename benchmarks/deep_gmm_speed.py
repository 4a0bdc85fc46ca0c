"""GMM layer vs the softmax layer it replaces: training-step time and peak memory, one core.

Compared side by side at the paper's scale (batch 200, 2560-wide input, 2432 states, GMM(272, 5)):
  softmax   Linear(2560, 2432) + softmax CE (the DNN's output layer)
  gmm       bottleneck Linear(2560, 272) + fused GMM layer + online prior posterior + CE (ours,
            the default on CPU: C++ element-wise stages, built on first use)
  gmm_eager the same layer with its torch-op element-wise stages (the fallback without a compiler)
  two_mm    the same maths as plain autograd ops (two matmuls, no fused backward)
  naive     the broadcast (B, S, g, d) form, at a reduced batch (it needs GBs at batch 200)
  gemms     only the GMM layer's three matrix products per block (no element-wise work)
  bottleneck only the Linear(2560, 272) forward + backward
            (gemms and bottleneck with --breakdown: gmm - gemms - bottleneck = the element-wise
            stages and Python overhead)
A step is what training does: grads set to None (as Lightning does), forward, CE, backward into
the input (as the last layer of a deep network) and the optimiser's step (``--optimizer``: the
presets' Adam, lr 1e-3, by default). The forward + backward part of the same steps is timed too
and printed beside it. Steps are timed round-robin (median of ``--repeats``) so that load from
other processes hits every variant alike, in wall time and in the process's CPU time (which
leaves out the time the scheduler gives to other processes on a shared machine). Peak memory is the largest amount of live tensor
storage during one step (from the profiler's allocation records on CPU, the caching allocator's
peak on CUDA) plus the parameters and the optimiser's state; grads are set to None before the
step so they count.

It prints the CPU model, threads, BLAS, the load average before and after, and the share of
subnormal (denormal) floats among the responsibilities before the layer flushes them and among
all matrix-product inputs of a step after (subnormal GEMM inputs cost up to 20x on some CPUs).
Every run flushes subnormals to zero on all threads (``core.denormals``, the runner's default
``flush_denormals: true``); ``--compare-flush`` adds ``softmax_nf`` / ``gmm_nf``, the same steps
with the CPU's default (subnormals kept), and prints the subnormal share of their gradients and
Adam state: the gap between the two is what an x86 CPU's microcode assists cost.

    python benchmarks/deep_gmm_speed.py [--repeats 20] [--naive-batch 8] [--breakdown]
    python benchmarks/deep_gmm_speed.py --device cuda     # eager stages, one block, no host sync

Both layers run in float32 on every device (no autocast: the GMM log-likelihoods are exact to
1e-3 nats only in fp32). It ends with the projected time of the GMM(d, g) study's output-layer
steps on the device used; ``--json F`` also writes the figures to F.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from benchmarks.common import add_common_args, describe, resolve_device, write_record  # noqa: E402
from benchmarks.common import machine as machine_record  # noqa: E402
from benchmarks.studies import STUDIES  # noqa: E402
from core.denormals import denormals_flushed, flush_denormals  # noqa: E402
from models.deep_gmm import GMMLayer, OnlineLogPrior, gmm_function, naive_gmm_nll  # noqa: E402
from models.deep_gmm.cpu_kernels import build_failure, kernels_in_use  # noqa: E402
from models.deep_gmm.gmm_function import default_chunk_states  # noqa: E402


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


OPTIMIZERS = {
    # the deep_gmm presets' optimiser (conf/module/deep_gmm/frame_classifier.yaml): Adam, lr 1e-3
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    "sgd": lambda params: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
    "none": None,
}


def make_step(
    model: nn.Module,
    batch: int,
    in_features: int,
    states: int,
    device: torch.device,
    optimizer: str,
    fwd_bwd: dict[str, list[float]],
) -> Callable[[], None]:
    """One training step: zero grads (set to None, as Lightning does), forward, CE, backward into
    the input and the optimiser's step. The forward + backward part's wall and CPU times go to
    ``fwd_bwd["wall"]`` and ``fwd_bwd["cpu"]``."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(batch, in_features, generator=gen).to(device).requires_grad_()
    y = torch.randint(0, states, (batch,), generator=gen).to(device)
    make_opt = OPTIMIZERS[optimizer]
    opt = make_opt(list(model.parameters())) if make_opt else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        model.zero_grad(set_to_none=True)
        h.grad = None
        loss = F.cross_entropy(model(h), y)
        if isinstance(model, GMMHead):
            loss = loss + model.prior.loss(y)
        loss.backward()
        sync()
        fwd_bwd["wall"].append(time.perf_counter() - t0)
        fwd_bwd["cpu"].append(time.process_time() - c0)
        if opt is not None:
            opt.step()

    step.optimizer = opt  # type: ignore[attr-defined]
    return step


def make_gemm_step(
    batch: int, states: int, dim: int, comps: int, device: torch.device
) -> Callable[[], None]:
    """The GMM layer's three matrix products per block at its shapes, nothing else."""
    chunk = default_chunk_states(states, comps, device, dim)
    gen = torch.Generator().manual_seed(0)
    x2 = torch.randn(batch, 2 * dim, generator=gen).to(device)
    w = torch.randn(states * comps, 2 * dim, generator=gen).to(device)
    r = torch.rand(batch, states * comps, generator=gen).to(device)
    comp = torch.empty(batch, chunk * comps, device=device)
    g = torch.empty(chunk * comps, 2 * dim, device=device)
    rw = torch.zeros(batch, 2 * dim, device=device)

    def step() -> None:
        for s0 in range(0, states, chunk):
            rows = slice(s0 * comps, min(states, s0 + chunk) * comps)
            n = rows.stop - rows.start
            torch.mm(x2, w[rows].t(), out=comp[:, :n])
        for s0 in range(0, states, chunk):
            rows = slice(s0 * comps, min(states, s0 + chunk) * comps)
            n = rows.stop - rows.start
            rw.addmm_(r[:, rows], w[rows])
            torch.mm(r[:, rows].t(), x2, out=g[:n])

    return step


def make_linear_step(
    batch: int, in_features: int, out_features: int, device: torch.device
) -> Callable[[], None]:
    """A bias-carrying Linear forward + backward into its input (the GMM layer's bottleneck)."""
    layer = nn.Linear(in_features, out_features).to(device)
    h = torch.randn(batch, in_features, device=device, requires_grad=True)
    grad = torch.randn(batch, out_features, device=device)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        h.grad = None
        layer(h).backward(grad)

    return step


def time_interleaved(
    steps: dict[str, Callable[[], None]],
    repeats: dict[str, int],
    device: torch.device,
    warmup: int = 2,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU seconds per step, variants timed round-robin so that a shared machine's
    load hits all alike. CPU time (of this process) leaves out the time the scheduler gives to
    other processes, which on a loaded machine is most of the wall time's noise; it still carries
    their cache and memory-bandwidth contention."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(max(repeats.values())):
        for name, step in steps.items():
            if r < repeats[name]:
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                sync()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    med = statistics.median
    return {n: med(ts) for n, ts in times.items()}, {n: med(ts) for n, ts in cpu.items()}


def peak_step_bytes_cuda(step: Callable[[], None]) -> int:
    """Peak of the caching allocator during one step, above what was live before it."""
    step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def peak_step_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak of (allocated - freed) tensor bytes during one step, from the profiler's memory records."""
    if device.type == "cuda":
        return peak_step_bytes_cuda(step)
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


def param_bytes(model: nn.Module, step: Callable[[], None]) -> int:
    """Parameters and the optimiser's state (both live through the whole step)."""
    opt = getattr(step, "optimizer", None)
    state = [t for s in (opt.state.values() if opt else []) for t in s.values()]
    tensors = [*model.parameters(), *(t for t in state if isinstance(t, torch.Tensor))]
    return sum(t.numel() * t.element_size() for t in tensors)


def _subnormal(t: torch.Tensor) -> tuple[int, int]:
    a = t.detach().abs()
    return int(((a > 0) & (a < torch.finfo(t.dtype).tiny)).sum()), t.numel()


class _ProductInputs(TorchDispatchMode):
    """Subnormal values among the inputs of every matrix product in a step."""

    def __init__(self) -> None:
        super().__init__()
        self.subnormal = self.values = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in ("mm", "addmm", "bmm", "baddbmm"):
            for t in args:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    sub, n = _subnormal(t)
                    self.subnormal, self.values = self.subnormal + sub, self.values + n
        return func(*args, **(kwargs or {}))


def subnormal_shares(step: Callable[[], None]) -> tuple[float, float]:
    """(share of the responsibilities that are subnormal before the flush, share of all
    matrix-product inputs of the step that are subnormal after it)."""
    before = [0, 0]
    real = gmm_function.pick_stages

    def counting(choice, x, mu, log_var):
        stages = real(choice, x, mu, log_var)

        def responsibilities(slab, scale, s0, s1):
            sub, n = _subnormal(slab * scale[:, None, s0:s1])  # what the stage gets before flushing
            before[0], before[1] = before[0] + sub, before[1] + n
            return stages.responsibilities(slab, scale, s0, s1)

        # the Python block loop (same stages), so that the count sees every block's input
        return dataclasses.replace(stages, responsibilities=responsibilities, backward_blocks=None)

    gmm_function.pick_stages = counting
    try:
        with _ProductInputs() as seen:
            step()
    finally:
        gmm_function.pick_stages = real
    return before[0] / max(1, before[1]), seen.subnormal / max(1, seen.values)


def keeping_subnormals(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` run with the CPU's default (FTZ/DAZ off on every thread), then the flush again."""

    def wrapped() -> None:
        threads = torch.get_num_threads()  # not every core: their spinning would slow the others
        flush_denormals(False, verify=False, threads=threads)
        try:
            step()
        finally:
            flush_denormals(True, verify=False, threads=threads)

    wrapped.optimizer = step.optimizer  # type: ignore[attr-defined]
    return wrapped


def subnormal_state(model: nn.Module, opt: torch.optim.Optimizer | None) -> tuple[float, float]:
    """Subnormal shares of the GMM parameters' last gradients and of their optimiser state."""
    params = [model.layer.mu, model.layer.log_var]
    grads = [p.grad for p in params if p.grad is not None]
    state = [t for p in params for t in (opt.state[p].values() if opt else []) if t.dim()]
    share = lambda ts: sum(_subnormal(t)[0] for t in ts) / max(1, sum(t.numel() for t in ts))  # noqa: E731
    return share(grads), share(state)


def machine() -> str:
    """CPU model (as lscpu says it), cores, BLAS, vector ISA."""
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except Exception:
        pass
    cfg = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", cfg)
    return (
        f"CPU {model}, {os.cpu_count()} cores, BLAS {blas.group(1) if blas else '?'}, "
        f"vector ISA {torch.backends.cpu.get_cpu_capability()}"
    )


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


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
    add_common_args(ap)
    ap.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default="adam",
        help="optimiser stepped in every variant's training step (default: the presets' Adam)",
    )
    ap.add_argument("--no-two-mm", action="store_true", help="skip the plain-autograd variant")
    ap.add_argument(
        "--compare-flush",
        action="store_true",
        help="also time softmax and gmm with subnormals kept (the CPU's default, no FTZ/DAZ)",
    )
    ap.add_argument(
        "--require-kernels",
        action="store_true",
        help="exit 1 when the C++ CPU kernels cannot be built (instead of timing the eager stages)",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the GMM's matrix products alone and the bottleneck alone",
    )
    args = ap.parse_args()
    device = resolve_device(ap, args)
    args.amp = "off"  # fp32 on every device: see the module docstring
    torch.manual_seed(0)
    size = (args.in_features, args.states, args.dim, args.components)

    variants: list[tuple[str, nn.Module | None, int]] = [
        ("softmax", nn.Linear(args.in_features, args.states), args.batch),
        ("gmm", GMMHead(*size, "gmm"), args.batch),
        ("gmm_eager", GMMHead(*size, "gmm_eager"), args.batch),
    ]
    if device.type == "cuda":  # the two are the same there (eager stages, one block)
        variants.pop()
    if not args.no_two_mm:
        variants.append(("two_mm", GMMHead(*size, "two_mm"), args.batch))
    if args.naive_batch:
        variants.append(("naive", GMMHead(*size, "naive"), args.naive_batch))
    variants = [(n, m.to(device), b) for n, m, b in variants]
    if args.compare_flush and device.type == "cpu":
        variants += [
            ("softmax_nf", nn.Linear(args.in_features, args.states), args.batch),
            ("gmm_nf", GMMHead(*size, "gmm"), args.batch),
        ]
    if args.breakdown:
        variants += [("gemms", None, args.batch), ("bottleneck", None, args.batch)]
    flushed = device.type == "cpu" and denormals_flushed()  # resolve_device flushed them
    where = machine() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"{where}; torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"batch {args.batch}, input {args.in_features}, states {args.states}, "
        f"GMM({args.dim}, {args.components}), device {device}; {load()}"
    )
    steps, fwd_bwd = {}, {}
    for name, model, batch in variants:
        if name == "gemms":
            steps[name] = make_gemm_step(batch, args.states, args.dim, args.components, device)
        elif name == "bottleneck":
            steps[name] = make_linear_step(batch, args.in_features, args.dim, device)
        else:
            fwd_bwd[name] = {"wall": [], "cpu": []}
            steps[name] = make_step(
                model, batch, args.in_features, args.states, device, args.optimizer, fwd_bwd[name]
            )
            if name.endswith("_nf"):
                steps[name] = keeping_subnormals(steps[name])
    repeats = {
        name: args.repeats if name != "naive" else max(3, args.repeats // 5) for name in steps
    }
    t0 = time.perf_counter()
    steps["gmm"]()  # the first call builds (or loads) the C++ kernels
    print(f"gmm first step (builds or loads its C++ kernels): {time.perf_counter() - t0:.1f} s")
    if device.type == "cpu":
        chunk = default_chunk_states(args.states, args.components, device, args.dim)
        kernels = kernels_in_use()
        if kernels is None:  # the layer fell back to its eager stages: say so, loudly
            print(
                f"GMM C++ kernels NOT in use ({build_failure()}): the gmm row times the eager "
                "stages, like gmm_eager; a C++ compiler and ninja (pip install ninja) build them"
            )
            if args.require_kernels:
                raise SystemExit(1)
        else:
            print(f"GMM stages: {kernels}; blocks of {chunk} states")
    flush_denormals(False, verify=False)  # count what the CPU would make without the flush
    before, after = subnormal_shares(steps["gmm"])
    flushed = flush_denormals(flushed) and flushed
    print(
        f"subnormal floats: {100 * before:.2f} % of the responsibilities before the flush; "
        f"{100 * after:.4f} % of all matrix-product inputs of a gmm step after it"
    )
    medians, cpu_medians = time_interleaved(steps, repeats, device)
    # forward + backward alone (the optimiser's step excluded), from the same timed steps
    fb = {n: statistics.median(ts["wall"][-repeats[n] :]) for n, ts in fwd_bwd.items()}
    fb_cpu = {n: statistics.median(ts["cpu"][-repeats[n] :]) for n, ts in fwd_bwd.items()}
    for n in ("gemms", "bottleneck"):
        if n in medians:
            fb[n], fb_cpu[n] = medians[n], cpu_medians[n]
    rows = [
        (
            name,
            batch,
            medians[name],
            peak_step_bytes(steps[name], device) + param_bytes(model, steps[name])
            if model
            else None,
        )
        for name, model, batch in variants
    ]
    base_t, base_m = rows[0][2], rows[0][3]
    base_fb, base_cpu, base_fb_cpu = fb.get("softmax"), cpu_medians["softmax"], fb_cpu["softmax"]
    print(
        f"training step = forward + backward + {args.optimizer} step; peak memory includes the "
        "parameters and the optimiser's state; x = ratio to softmax of the wall-time median, "
        "cpu x = of the CPU-time median"
    )
    print(
        f"{'variant':<10} {'batch':>5} {'ms/step':>9} {'x time':>7} {'cpu x':>6} "
        f"{'fwd+bwd ms':>10} {'x':>5} {'cpu x':>6} {'peak MiB':>9} {'x mem':>6}"
    )
    for name, batch, t, peak in rows:
        note = (
            ""
            if batch == args.batch
            else f"   (batch {batch}; ~{t * args.batch / batch * 1e3:.0f} ms at {args.batch})"
        )
        step_t = (
            f"{t * 1e3:>9.1f} {t / base_t:>7.2f} {cpu_medians[name] / base_cpu:>6.2f}"
            if name in fwd_bwd
            else f"{'-':>9} {'-':>7} {'-':>6}"
        )
        fb_t = (
            f"{fb[name] * 1e3:>10.1f} {fb[name] / base_fb:>5.2f} {fb_cpu[name] / base_fb_cpu:>6.2f}"
            if name in fb
            else f"{'-':>10} {'-':>5} {'-':>6}"
        )
        mem = f"{peak / 2**20:>9.1f} {peak / base_m:>6.2f}" if peak else f"{'-':>9} {'-':>6}"
        print(f"{name:<10} {batch:>5} {step_t} {fb_t} {mem}{note}")
    if args.breakdown:
        rest = fb["gmm"] - fb["gemms"] - fb["bottleneck"]
        print(
            f"gmm forward + backward = products {fb['gemms'] * 1e3:.1f} ms "
            f"({fb['gemms'] / base_fb:.2f}x softmax's) + bottleneck {fb['bottleneck'] * 1e3:.1f} "
            f"ms ({fb['bottleneck'] / base_fb:.2f}x) + element-wise stages and overhead "
            f"{rest * 1e3:.1f} ms ({rest / base_fb:.2f}x)"
        )
    if "gmm_nf" in steps:
        nf_model = next(m for n, m, _ in variants if n == "gmm_nf")
        flush_denormals(False, verify=False)  # with DAZ on, abs() would read them as 0
        grads, state = subnormal_state(nf_model, steps["gmm_nf"].optimizer)
        flush_denormals(flushed, verify=False)
        print(
            f"without the flush: {100 * grads:.2f} % of the GMM parameters' gradients and "
            f"{100 * state:.2f} % of their Adam state are subnormal (after "
            f"{len(fwd_bwd['gmm_nf']['wall'])} steps)"
        )
    print(f"subnormals flushed to zero on every thread: {'yes' if flushed else 'no'}")
    print(load())
    info = machine_record(device)
    print(describe(info))
    study = STUDIES["deep_gmm"]
    print(study.line(medians["gmm"], info["device"]))
    figures = {
        name: {"ms_per_step": round(t * 1e3, 2), "x_time": round(t / base_t, 3)}
        | ({"peak_mib": round(peak / 2**20, 1), "x_mem": round(peak / base_m, 3)} if peak else {})
        for name, _, t, peak in rows
    }
    for name in figures:
        if name in fb and base_fb:
            figures[name]["fwd_bwd_x"] = round(fb[name] / base_fb, 3)
    figures["optimizer"] = args.optimizer
    figures["subnormal_before_flush"] = before
    figures["flush_denormals"] = flushed
    if device.type == "cpu":
        figures["kernels"] = kernels_in_use() or f"eager (C++ build failed: {build_failure()})"
    figures["projected_study_hours"] = round(study.projected_hours(medians["gmm"]), 2)
    write_record(args.json, "deep_gmm_speed", info, figures)


if __name__ == "__main__":
    main()
