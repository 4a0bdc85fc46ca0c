"""The recurrent-BN LSTM's C++ step kernels (``csrc/bn_lstm_cpu.cpp``), built on first use.

Why: per step the cell does ~25 small element-wise torch ops forward and ~35 backward on
(D, B, 4H) tiles; at the paper's size (B = 640 epochs, H = 64) those, not the matrix
products, made the recurrent-BN step 1.7x an ``nn.LSTM`` step. The kernels do the same maths
in a few passes per step. ``torch.utils.cpp_extension`` compiles the source once per machine
(about 15 s of one core; later processes load the cached build from ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``). Without a C++ compiler (or ninja) ``cpp_kernels()`` logs one
warning saying why and returns None; the layer then runs its torch-op step (same results,
slower). Same build pattern as ``models/deep_gmm/cpu_kernels.py``.
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

__all__ = ["cpp_kernels", "SOURCE"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "bn_lstm_cpu.cpp"

_extension: Any = None  # torch.ops.sleep_tsr_bn_lstm once loaded
_failure: str | None = None


def _thread_flags() -> list[str]:
    """OpenMP for at::parallel_for on Linux (the extension then shares torch's libgomp)."""
    return ["-fopenmp"] if platform.system() == "Linux" else []


def _vector_flags() -> list[str]:
    """Compile for the vector ISA torch dispatches to here (AVX2 on x86-64), else portable code."""
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() in ("x86_64", "amd64") and capability in ("AVX2", "AVX512"):
        return ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return ["-DCPU_CAPABILITY=DEFAULT"]


def _load() -> Any:
    """Build (or load the cached build of) the extension; raises if that is impossible."""
    from torch.utils.cpp_extension import get_default_build_root, load

    flags = ["-O3", *_vector_flags(), *_thread_flags()]
    key = " ".join([SOURCE.read_text(), *flags, torch.__version__, sys.version])
    name = f"bn_lstm_cpu_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    build_dir = root / name
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob("*.so")):
        # A warning so that it shows where logging is not configured: a silent 30 s pause
        # before the first step would look like a hang.
        log.warning(
            "recurrent-BN LSTM: building its C++ CPU kernels in %s (once per machine, ~15 s)",
            build_dir,
        )
    t0 = time.perf_counter()
    load(
        name=name,
        sources=[str(SOURCE)],
        extra_cflags=flags,
        extra_ldflags=_thread_flags(),
        build_directory=str(build_dir),
        is_python_module=False,  # registers torch.ops.sleep_tsr_bn_lstm (no pybind11 headers)
        verbose=False,
    )
    log.info("recurrent-BN LSTM: C++ CPU kernels ready in %.1f s", time.perf_counter() - t0)
    return torch.ops.sleep_tsr_bn_lstm


def cpp_kernels() -> Any:
    """The compiled step kernels, or None (after one warning) if they cannot be built here."""
    global _extension, _failure
    if _extension is not None or _failure is not None:
        return _extension
    try:
        _extension = _load()
    except Exception as err:  # no compiler, no ninja, unsupported platform
        _failure = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err) else ''}"
        log.warning(
            "recurrent-BN LSTM: the C++ CPU kernels could not be built (%s); using torch ops "
            "(same results, slower). Install a C++ compiler and ninja to get them, or pass "
            "kernels='eager' to skip the attempt.",
            _failure,
        )
    return _extension
