"""Build a C++ CPU extension on first use, once per machine: what every paper's kernels share.

``torch.utils.cpp_extension`` compiles the source into a build folder named after a hash of the
source, the flags, torch's and Python's versions (so an edit or an upgrade rebuilds, and every
later process loads the cached build from ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``). Concurrent first builds are serialised by cpp_extension's own OS
file lock, released by the kernel when a build is killed, so there is no lock handling here.
The callers keep their fallback: they catch the error and log ``failure_reason``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["build_extension", "failure_reason", "thread_flags", "vector_flags", "vector_isa"]


def thread_flags() -> list[str]:
    """OpenMP for at::parallel_for on Linux (the extension then shares torch's libgomp)."""
    return ["-fopenmp"] if platform.system() == "Linux" else []


# torch's own flags for its AVX-512 kernels (the CPU_CAPABILITY_AVX512 build of ATen).
AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"]


def vector_isa(avx512: bool = False) -> str:
    """The ISA an extension is compiled for here: torch's dispatch capability ("AVX512" only when
    the caller opts in, else "AVX2") on x86-64, "DEFAULT" (portable code) elsewhere.
    ``ATEN_CPU_CAPABILITY=avx2`` lowers torch's capability, and so this, on an AVX-512 CPU."""
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() not in ("x86_64", "amd64") or capability not in (
        "AVX2",
        "AVX512",
    ):
        return "DEFAULT"
    return "AVX512" if avx512 and capability == "AVX512" else "AVX2"


def vector_flags(avx512: bool = False) -> list[str]:
    """Compiler flags for ``vector_isa(avx512)``. AVX-512 is opt-in: a kernel must carry its
    own AVX-512 paths for any intrinsics it uses under ``CPU_CAPABILITY_AVX2``."""
    isa = vector_isa(avx512)
    if isa == "AVX512":
        return [*AVX512_FLAGS, "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
    if isa == "AVX2":
        return ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return ["-DCPU_CAPABILITY=DEFAULT"]


def build_extension(
    source: Path,
    prefix: str,
    log: logging.Logger,
    what: str,
    expected: str,
    python_module: bool = True,
    avx512: bool = False,
) -> Any:
    """Build (or load the cached build of) ``source``; raises if that is impossible.

    ``what`` names the kernels in the log ("GMM layer"), ``expected`` the first build's duration
    ("about 30 s"). With ``python_module=False`` the source registers ``torch.ops`` itself (no
    pybind11 headers) and the return value is cpp_extension's, not a module. ``avx512`` compiles
    for AVX-512 where torch dispatches to it (``vector_flags``).
    """
    from torch.utils.cpp_extension import get_default_build_root, load

    flags = ["-O3", *vector_flags(avx512), *thread_flags()]
    key = " ".join([source.read_text(), *flags, torch.__version__, sys.version])
    name = f"{prefix}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    build_dir = root / name
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob("*.so")):
        # A warning so that it shows where logging is not configured: a silent pause of half a
        # minute before the first step would look like a hang.
        log.warning(
            "%s: building its C++ CPU kernels in %s (once per machine, %s)",
            what,
            build_dir,
            expected,
        )
    t0 = time.perf_counter()
    built = load(
        name=name,
        sources=[str(source)],
        extra_cflags=flags,
        extra_ldflags=thread_flags(),
        build_directory=str(build_dir),
        is_python_module=python_module,
        verbose=False,
    )
    log.info("%s: C++ CPU kernels ready in %.1f s", what, time.perf_counter() - t0)
    return built


def failure_reason(err: Exception) -> str:
    """One line for the fallback warning: the error's type and the compiler's first ``error:``
    line, else the message's last line (for a failed compile that is only ninja's "build
    stopped: subcommand failed", which says nothing about why)."""
    lines = str(err).strip().splitlines()
    errors = [line.strip() for line in lines if "error:" in line]
    line = errors[0] if errors else (lines[-1] if lines else "")
    return f"{type(err).__name__}: {line}"
