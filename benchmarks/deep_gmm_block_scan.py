"""GMM layer training step at several block sizes, against the softmax step, on this CPU.

The fused likelihood processes the states in blocks of about ``CPU_CHUNK_ROWS`` components so
that a block's weights and densities stay in cache between the matrix product and the
element-wise work around it (``models/deep_gmm/gmm_function.py``). The best size depends on the
CPU's cache (L2 per core: 0.5 MB on an AMD EPYC Zen 2/3, 1-2 MB on a recent Xeon), and the
default sizes the block to it (``l2_block_rows``: 256 rows here, 1024 on a 2 MB L2); this scan
times the whole training step (forward, backward, Adam) at each size, and with the weights kept
from forward to backward (``save``) instead of recomputed, round-robin so that load hits every
variant alike. It prints the CPU model and its L2 size.

    python benchmarks/deep_gmm_block_scan.py [--rows 128 256 512 1024] [--repeats 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_common_args, describe, machine, resolve_device  # noqa: E402
from benchmarks.deep_gmm_speed import GMMHead, make_step  # noqa: E402
from models.deep_gmm import gmm_function  # noqa: E402
from models.deep_gmm.gmm_function import default_chunk_states, l2_block_rows  # noqa: E402


def l2_size() -> str:
    """The L2 cache of CPU 0 as the kernel reports it (per core on x86)."""
    try:
        return Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--save", action="store_true", help="also time each size with saved weights")
    add_common_args(ap)
    args = ap.parse_args()
    device = resolve_device(ap, args)
    if device.type != "cpu":
        ap.error("--device: the block size only applies on CPU")
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    variants = [(rows, False) for rows in args.rows]
    variants += [(rows, True) for rows in args.rows] if args.save else []
    steps = {
        "softmax": make_step(
            nn.Linear(2560, 2432), 200, 2560, 2432, cpu, "adam", {"wall": [], "cpu": []}
        )
    }
    settings = {}
    for rows, save in variants:
        name = f"rows {rows}" + (" save" if save else "")
        steps[name] = make_step(
            GMMHead(2560, 2432, 272, 5, "gmm"),
            200,
            2560,
            2432,
            cpu,
            "adam",
            {"wall": [], "cpu": []},
        )
        settings[name] = (rows, save)
    default = (gmm_function.CPU_CHUNK_ROWS, gmm_function.SAVE_WEIGHTS)
    auto = default[0] if default[0] is not None else l2_block_rows(272)

    def run(name: str) -> None:
        rows, save = settings.get(name, default)
        gmm_function.CPU_CHUNK_ROWS, gmm_function.SAVE_WEIGHTS = rows, save
        steps[name]()

    print(describe(machine(device)) + f", L2 {l2_size()}")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for name in steps:  # warm-up (and the C++ build on first use)
        run(name)
        run(name)
    for _ in range(args.repeats):
        for name in steps:
            t0 = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - t0)
    gmm_function.CPU_CHUNK_ROWS, gmm_function.SAVE_WEIGHTS = default
    base = statistics.median(times["softmax"])
    print(f"default: rows {auto} (L2-sized), save {default[1]}; median of {args.repeats} steps")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows = settings[name][0] if name in settings else None
        states = ""
        if rows is not None:  # the block holds whole vectors of states (STATE_MULTIPLE)
            gmm_function.CPU_CHUNK_ROWS = rows
            states = f"  ({default_chunk_states(2432, 5, cpu, 272)} states a block)"
            gmm_function.CPU_CHUNK_ROWS = default[0]
        print(f"{name:16s} {med * 1e3:8.1f} ms  {med / base:5.2f}x softmax{states}")


if __name__ == "__main__":
    main()
