"""What every benchmark shares: the machine it ran on, its device, and a JSON record of figures.

A figure without its machine is not a figure: ratios move with the CPU (AVX-512 vs AVX2), the BLAS,
the thread count and the load. ``machine()`` collects all of them; ``add_common_args`` gives every
benchmark the same ``--device`` / ``--amp`` / ``--json`` options; ``write_record`` stores the
figures beside the machine so that ``python -m benchmarks.report`` can build docs/results.md
from records instead of from text typed by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from core.denormals import denormals_flushed, flush_denormals


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def blas() -> str:
    """The BLAS torch was built with (MKL on Intel wheels, OpenBLAS elsewhere)."""
    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return found.group(1) if found else "unknown"


def machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Everything a speed figure depends on, as a flat dict."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "blas": blas(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "load": round(os.getloadavg()[0], 1),
        "flush_denormals": denormals_flushed(),
        "device": "cpu",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def describe(info: dict[str, Any]) -> str:
    """One line for the top of a benchmark's output."""
    line = (
        f"{info['date']}; CPU {info['cpu']}, {info['cores']} cores, torch threads "
        f"{info['threads']}, torch {info['torch']}, BLAS {info['blas']}, ISA {info['isa']}, "
        f"load average {info['load']}, subnormals "
        f"{'flushed' if info.get('flush_denormals') else 'kept'}"
    )
    if info["device"] != "cpu":
        line += f"; device {info['device']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}"
    return line


def add_common_args(ap: argparse.ArgumentParser, *, default_threads: int = 1) -> None:
    """``--device``, ``--amp``, ``--threads`` and ``--json``: the same on every benchmark."""
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument(
        "--amp",
        choices=("off", "bf16"),
        default=None,
        help="autocast dtype (default: bf16 on cuda, off on cpu)",
    )
    ap.add_argument("--threads", type=int, default=default_threads, help="torch CPU threads")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument(
        "--keep-denormals",
        action="store_true",
        help="leave subnormal floats as the CPU does (runs flush them: flush_denormals: true)",
    )


def resolve_device(ap: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """The device asked for, refusing cuda where there is none (one line, exit 2)."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if device.type not in ("cpu", "cuda"):
        ap.error(f"--device {args.device}: allowed cpu, cuda")
    if args.amp is None:
        args.amp = "bf16" if device.type == "cuda" else "off"
    torch.set_num_threads(args.threads)
    if not args.keep_denormals:
        flush_denormals(True)  # what every run does (conf/config.yaml, core/denormals.py)
    return device


@contextlib.contextmanager
def autocast(device: torch.device, amp: str) -> Iterator[None]:
    """bf16 autocast when asked (no-op otherwise)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        yield


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so a wall-clock timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_record(
    path: str | None, name: str, info: dict[str, Any], figures: dict[str, Any]
) -> None:
    """Store ``figures`` with the machine that measured them (no-op without ``--json``)."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": name, "machine": info, "figures": figures}, indent=2))
