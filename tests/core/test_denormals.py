"""Subnormal floats are flushed on every intra-op thread, and the runner does it by default."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from core.denormals import denormals_flushed, flush_denormals


def _survivors(threads: int) -> int:
    """Subnormal inputs that come out of a product spread over ``threads`` threads non-zero."""
    torch.set_num_threads(threads)
    x = torch.full((1 << 21,), torch.finfo(torch.float32).tiny / 8)
    return int(((x * 1.0) != 0).sum())


def test_flush_reaches_every_thread_and_can_be_undone() -> None:
    threads = torch.get_num_threads()
    was = denormals_flushed()
    try:
        assert flush_denormals(False) is False
        assert _survivors(2) == 1 << 21  # the CPU's default keeps them
        assert flush_denormals(True) is True
        assert _survivors(1) == 0
        assert _survivors(2) == 0
        assert torch.tensor(1.5e-38).item() != 0.0  # the smallest normal floats are untouched
    finally:
        flush_denormals(was)
        torch.set_num_threads(threads)


def test_runs_flush_by_default() -> None:
    config = Path(__file__).resolve().parents[2] / "conf" / "config.yaml"
    assert OmegaConf.load(config).flush_denormals is True
