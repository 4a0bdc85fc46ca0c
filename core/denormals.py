"""Flush subnormal floats to zero on every CPU thread torch computes on.

x86 CPUs take a microcode assist for every arithmetic operation that reads or produces a
subnormal float (|x| < 1.2e-38 in float32): 10-100x slower per element on Intel Xeons, less on
AMD EPYC. Training makes them in bulk: the Adam second moment of a gradient of 1e-20 is 1e-40,
and at the deep_gmm layer's initialisation ~3 % of the responsibilities and ~9 % of the Adam state
of its means are subnormal. The same code then runs several times slower on one x86 CPU than on
another (issue 16: 5.2x against 1.4x). TensorFlow sets the flush-to-zero (FTZ) and
denormals-are-zero (DAZ) bits in every thread it computes on; PyTorch sets them only where asked
(``torch.set_flush_denormal``), and only in the calling thread. ``flush_denormals`` sets them in
the calling thread and in every thread of the OpenMP pool that runs torch's intra-op work and
MKL's products, then checks that a product spread over all threads returns zeros.

Values above 1.2e-38 (float32) / 2.2e-308 (float64) are untouched; no figure of this project
depends on a smaller one.
"""

from __future__ import annotations

import ctypes
import logging
import os

import torch

__all__ = ["flush_denormals", "denormals_flushed"]

log = logging.getLogger(__name__)

_PROBE_ELEMS = 1 << 20  # big enough for torch to split the product over every thread
_callback = None  # kept alive: libgomp calls it from its worker threads


def _run_on_every_omp_thread(enabled: bool, threads: int) -> bool:
    """Call ``torch.set_flush_denormal`` inside one OpenMP parallel region of ``threads`` threads.

    libgomp keeps one pool per process (torch's bundled copy; loading ``libgomp.so.1`` by its
    soname returns the copy already loaded), so the threads of this region are the ones torch
    and MKL use afterwards. A ctypes callback takes the GIL in each worker: no C++ build needed.
    """
    global _callback
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
        parallel = gomp.GOMP_parallel
    except (OSError, AttributeError):
        return False
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    _callback = proto(lambda _data: torch.set_flush_denormal(enabled))
    parallel.argtypes = [proto, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    parallel(_callback, None, threads, 0)
    return True


def denormals_flushed(dtype: torch.dtype = torch.float32) -> bool:
    """Whether a subnormal input comes out of a multi-threaded product as zero on every thread."""
    probe = torch.full((_PROBE_ELEMS,), torch.finfo(dtype).tiny / 4, dtype=dtype)
    return bool(((probe * 1.0) == 0).all())


def flush_denormals(enabled: bool = True, verify: bool = True, threads: int | None = None) -> bool:
    """Set (or clear) FTZ/DAZ on this thread and torch's intra-op threads; True if in effect.

    Returns False, after one warning, where the CPU has no such mode (not x86 with SSE3) or the
    worker threads could not be reached; the run then goes on with the CPU's default.
    ``verify=False`` skips the check (a 4 MB product), for callers that toggle the mode often;
    ``threads`` limits the parallel region to that many threads (default: every core, so that
    idle pool threads a later ``set_num_threads`` wakes are set too). A region of all cores
    leaves their threads spinning for a moment, so a benchmark that toggles the mode between
    timed steps passes ``threads=torch.get_num_threads()``.
    """
    if not torch.set_flush_denormal(enabled):
        if enabled:
            log.warning("flush_denormals: this CPU has no flush-to-zero mode; left as it is")
        return False
    current = torch.get_num_threads()
    # Every thread the pool may hold, not only today's count: a later set_num_threads(n) reuses
    # idle pool threads with whatever mode they had (threads created later copy this thread's).
    pool = threads if threads is not None else max(current, os.cpu_count() or 1)
    reached = pool <= 1 or _run_on_every_omp_thread(enabled, pool)
    if enabled and not (reached and (not verify or denormals_flushed())):
        log.warning(
            "flush_denormals: set on the main thread only (%d intra-op threads); products that "
            "meet subnormal floats may run slower on some threads",
            current,
        )
        return False
    return enabled
