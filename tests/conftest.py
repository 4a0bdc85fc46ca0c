"""Shared test setup: single-threaded torch, no wandb network, offline everything."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _single_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _cpu_default_float_mode():
    """Every test starts with the CPU's default (subnormals kept): a run started in-process
    flushes them on every thread (``flush_denormals: true``), which must not leak into the
    tests after it (some build subnormal inputs on purpose)."""
    from core.denormals import denormals_flushed, flush_denormals

    if denormals_flushed():
        flush_denormals(False)
    yield
