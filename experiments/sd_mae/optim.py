"""AdamW/SGD with batch-size-scaled lr, warm-up + cosine, and layer-wise lr decay (MAE recipe)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def scaled_lr(base_lr: float, batch_size: int, accumulate: int = 1, devices: int = 1) -> float:
    """MAE's linear scaling rule: lr = base_lr * effective batch / 256."""
    return base_lr * batch_size * accumulate * devices / 256


def warmup_cosine(
    total_steps: int, warmup_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """Multiplier for LambdaLR: linear warm-up from 0, then half-cosine down to ``min_ratio``."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1) if total_steps > 1 else 0

    def fn(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return fn


def decay_groups(
    named: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int = 1,
    layer_decay: float = 1.0,
) -> list[dict]:
    """Parameter groups: no weight decay on biases/norms/mask tokens; with ``layer_id``, group
    ``i`` gets ``lr_scale = layer_decay ** (num_layers - i)`` (deeper layers learn faster)."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name.endswith(".bias") or "token" in name
        lid = layer_id(name) if layer_id else num_layers
        key = (lid, no_wd)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if no_wd else weight_decay,
                "lr_scale": layer_decay ** (num_layers - lid),
            }
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up + cosine; each group keeps its ``lr_scale``."""
    base = warmup_cosine(total_steps, warmup_steps)
    scales = [g.get("lr_scale", 1.0) for g in optimizer.param_groups]
    fns = [lambda s, sc=sc: sc * base(s) for sc in scales]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fns)


def steps_for(trainer, warmup_epochs: float) -> tuple[int, int]:
    """(total optimiser steps, warm-up steps) of the coming fit."""
    total = int(trainer.estimated_stepping_batches)
    epochs = max(1, trainer.max_epochs or 1)
    return total, int(round(total * warmup_epochs / epochs))
