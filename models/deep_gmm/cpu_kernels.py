"""The GMM layer's C++ element-wise stages (``csrc/gmm_cpu_kernels.cpp``), built on first use.

``torch.utils.cpp_extension`` compiles the source once per machine (about 30 s; later processes
load the cached build from ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``) with the
vector width torch itself uses on this CPU, AVX2 on x86-64 (``kernel_isa``; ``AVX512`` opts in to
16-wide stages where torch dispatches to AVX-512). When there is no C++ compiler, or the build fails
for any other reason, ``cpp_stages()`` logs one warning saying why and returns None, and the
layer runs its eager stages: same results, slower.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from core.cpp_build import build_extension, failure_reason, vector_isa

from .gmm_stages import GMMStages

__all__ = ["cpp_stages", "kernel_isa", "kernels_in_use", "load_extension", "SOURCE"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "gmm_cpu_kernels.cpp"

# log_floor passed to the kernels when there is no variance floor (clamps nothing).
NO_FLOOR = -3.0e38

# Build 16-wide AVX-512 stages where torch dispatches to AVX-512. Off: on the Intel Xeon of the
# GPU host (2 MB L2, MKL products in AVX-512) they measured 1.34x and 1.44x of the softmax step
# against 1.28x and 1.29x with the AVX2 stages (2026-11-28, docs/deep_gmm.md): the stages are
# bound by memory there, not by vector width. The source compiles either way (a slow test).
AVX512 = False

_extension: ModuleType | None = None
_failure: str | None = None
_stages: GMMStages | None = None


def kernel_isa() -> str:
    """The vector ISA the kernels are built for here: "AVX2", "DEFAULT" or (``AVX512``) "AVX512"."""
    return vector_isa(avx512=AVX512)


def kernels_in_use() -> str | None:
    """What the layer's CPU stages run on: "C++ (AVX512)" and the like, None when the C++ build
    failed (the layer then runs its eager stages), or "eager" before any layer asked for the C++
    stages (``kernels='auto'`` keeps small layers on the eager stages)."""
    if _stages is not None:
        return f"C++ ({kernel_isa()})"
    return None if _failure is not None else "eager"


def build_failure() -> str | None:
    """Why the C++ build failed in this process (``failure_reason``), or None."""
    return _failure


def load_extension() -> ModuleType:
    """Build (or load the cached build of) the extension; raises if that is impossible."""
    global _extension
    if _extension is None:
        _extension = build_extension(
            SOURCE, "gmm_cpu_kernels", log, "GMM layer", "about 30 s", avx512=AVX512
        )
    return _extension


def cpp_stages() -> GMMStages | None:
    """The C++ stages, or None (after one warning) if the extension cannot be built here."""
    global _failure, _stages
    if _stages is not None or _failure is not None:
        return _stages
    try:
        ext = load_extension()
    except Exception as err:  # no compiler, no ninja, unsupported platform
        _failure = failure_reason(err)
        log.warning(
            "GMM layer: the C++ CPU kernels could not be built (%s); using the eager kernels "
            "(same results, slower at the paper's size). Install a C++ compiler and ninja to get "
            "them, or pass kernels='eager' to skip the attempt.",
            _failure,
        )
        return None
    _stages = _make_stages(ext)
    return _stages


def _make_stages(ext: ModuleType) -> GMMStages:
    def prepare(mu3, lv3, log_w, w_block, s0, s1, log_floor, centre, sync_free):
        # CPU only, so reading the floor check back costs no device sync: sync_free is moot.
        const = w_block.new_empty(w_block.shape[0], s1 - s0)
        lf = NO_FLOOR if log_floor is None else log_floor
        clamped = ext.prepare(mu3, lv3, log_w, w_block, const, centre, s0, s1 - s0, lf)
        return const, clamped

    def densities(comp3, const, total, out, s0, s1):
        ext.densities(comp3, const, total, out, s0)

    def responsibilities(slab, scale, s0, s1) -> Tensor:
        r_b = slab.new_empty(slab.shape[1], slab.shape[2])
        ext.responsibilities(slab, scale, r_b, s0)
        return r_b

    empty = torch.empty(0)

    def param_grads(g_block, mu3, lv3, w_block, r_b, grad_mu3, grad_lv3, s0, s1, lf, mask, centre):
        ext.grads(
            g_block,
            mu3,
            lv3,
            w_block,
            r_b,
            empty if grad_mu3 is None else grad_mu3,
            empty if grad_lv3 is None else grad_lv3,
            centre,
            s0,
            s1 - s0,
            NO_FLOOR if lf is None else lf,
            bool(mask),
            False,  # the weights are in w_block already (the Python loop's prepare)
        )

    def forward_blocks(
        x2, mu3, lv3, log_w, centre, dens, total, out, weights, chunk, lf, save, sync_free
    ):
        return ext.forward_blocks(
            x2, mu3, lv3, log_w, centre, dens, total, out, weights, chunk,
            NO_FLOOR if lf is None else lf, save,
        )  # fmt: skip

    def backward_blocks(
        dens, scale, xb, mu3, lv3, log_w, centre, weights, save, r_sum, rw, gbuf,
        grad_mu3, grad_lv3, chunk, lf, floored, sync_free,
    ):  # fmt: skip
        ext.backward_blocks(
            dens, scale, xb, mu3, lv3, log_w, centre, weights, save, r_sum,
            empty if rw is None else rw, empty if gbuf is None else gbuf,
            empty if grad_mu3 is None else grad_mu3, empty if grad_lv3 is None else grad_lv3,
            chunk, NO_FLOOR if lf is None else lf, floored,
        )  # fmt: skip

    return GMMStages(
        "cpp", prepare, densities, responsibilities, param_grads, forward_blocks, backward_blocks
    )
