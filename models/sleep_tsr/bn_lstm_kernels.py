"""The recurrent-BN LSTM's C++ step kernels (``csrc/bn_lstm_cpu.cpp``), built on first use.

Why: per step the cell does ~25 small element-wise torch ops forward and ~35 backward on
(D, B, 4H) tiles; at the paper's size (B = 640 epochs, H = 64) those, not the matrix
products, made the recurrent-BN step 1.7x an ``nn.LSTM`` step. The kernels do the same maths
in a few passes per step. ``torch.utils.cpp_extension`` compiles the source once per machine
(about 15 s of one core; later processes load the cached build from ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``). Without a C++ compiler (or ninja) ``cpp_kernels()`` logs one
warning saying why and returns None; the layer then runs its torch-op step (same results,
slower). The build itself is ``core/cpp_build.py``'s, shared with deep_gmm's kernels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from core.cpp_build import build_extension, failure_reason

__all__ = ["cpp_kernels", "SOURCE"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "bn_lstm_cpu.cpp"

_extension: Any = None  # torch.ops.sleep_tsr_bn_lstm once loaded
_failure: str | None = None


def _load() -> Any:
    """Build (or load the cached build of) the extension; raises if that is impossible."""
    # is_python_module=False: the source registers torch.ops.sleep_tsr_bn_lstm (no pybind11)
    build_extension(SOURCE, "bn_lstm_cpu", log, "recurrent-BN LSTM", "~15 s", python_module=False)
    return torch.ops.sleep_tsr_bn_lstm


def cpp_kernels() -> Any:
    """The compiled step kernels, or None (after one warning) if they cannot be built here."""
    global _extension, _failure
    if _extension is not None or _failure is not None:
        return _extension
    try:
        _extension = _load()
    except Exception as err:  # no compiler, no ninja, unsupported platform
        _failure = failure_reason(err)
        log.warning(
            "recurrent-BN LSTM: the C++ CPU kernels could not be built (%s); using torch ops "
            "(same results, slower). Install a C++ compiler and ninja to get them, or pass "
            "kernels='eager' to skip the attempt.",
            _failure,
        )
    return _extension
