"""mcfly's random architecture search space for DeepConvLSTM, sampled with a seed.

The paper sampled two DeepConvLSTM models with mcfly and kept the better one on validation.
mcfly draws (``mcfly.modelgen.generate_DeepConvLSTM_hyperparameter_set``): the number of conv
layers uniformly in [1, 10] with filters in [10, 100] each, LSTM layers in [1, 5] with
[10, 100] units each, and learning rate and L2 rate as ``10 ** -U(1, 4)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class McflyDeepConvLSTMSpace:
    """Ranges of mcfly's DeepConvLSTM search (inclusive integer bounds, log10 exponents)."""

    min_conv_layers: int = 1
    max_conv_layers: int = 10
    min_conv_filters: int = 10
    max_conv_filters: int = 100
    min_lstm_layers: int = 1
    max_lstm_layers: int = 5
    min_lstm_units: int = 10
    max_lstm_units: int = 100
    low_lr_exp: float = 1.0
    high_lr_exp: float = 4.0
    low_reg_exp: float = 1.0
    high_reg_exp: float = 4.0

    def sample(self, rng: np.random.Generator) -> dict:
        """One architecture: ``conv_filters``, ``lstm_units``, ``lr``, ``l2``."""
        n_conv = int(rng.integers(self.min_conv_layers, self.max_conv_layers + 1))
        n_lstm = int(rng.integers(self.min_lstm_layers, self.max_lstm_layers + 1))
        conv = rng.integers(self.min_conv_filters, self.max_conv_filters + 1, size=n_conv)
        lstm = rng.integers(self.min_lstm_units, self.max_lstm_units + 1, size=n_lstm)
        lr = 10 ** -rng.uniform(self.low_lr_exp, self.high_lr_exp)
        l2 = 10 ** -rng.uniform(self.low_reg_exp, self.high_reg_exp)
        return {
            "conv_filters": [int(v) for v in conv],
            "lstm_units": [int(v) for v in lstm],
            "lr": float(f"{lr:.4g}"),
            "l2": float(f"{l2:.4g}"),
        }

    def as_dict(self) -> dict:
        return asdict(self)


def sample_architectures(
    n: int, seed: int, space: McflyDeepConvLSTMSpace | None = None
) -> list[dict]:
    """``n`` architectures drawn reproducibly from ``space`` (mcfly's ranges by default)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    space = space or McflyDeepConvLSTMSpace()
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]
