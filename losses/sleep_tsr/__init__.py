"""Losses of SeqSleepNet + TSR: per-epoch cross-entropy, L2 and the temporal smoothness term."""

from losses.sleep_tsr.temporal_smoothness import (
    TemporalSmoothnessLoss,
    per_epoch_cross_entropy,
    smoothness_penalty,
)

__all__ = ["TemporalSmoothnessLoss", "per_epoch_cross_entropy", "smoothness_penalty"]
