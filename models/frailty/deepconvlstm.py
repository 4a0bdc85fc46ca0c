"""DeepConvLSTM as built by mcfly (van Kuppevelt et al., 2020), the model of Amjad et al.

mcfly's Keras graph, reproduced layer by layer so that the published best model
``Conv(54)-BN-LSTM(29)-LSTM(95)-LSTM(94)-LSTM(46)-D-TD(3)-S`` and every architecture of
mcfly's search space (conv layers 1-10, LSTM layers 1-5) are expressible as config lists:

    input (B, T, C) -> BatchNorm over channels -> (B, 1, T, C)
    -> [Conv2D(F_i, kernel (3, 1), padding same) -> BatchNorm -> ReLU] for each F_i
    -> (B, T, C * F_last) -> [LSTM(U_j), return sequences] for each U_j
    -> Dropout -> time-distributed Dense(K) -> logits at the last step (or mean over time)

The kernel (3, 1) slides along time only and shares its weights across the IMU channels,
which is why the conv output is flattened to ``C * F`` features per step. Only the input
BatchNorm and the first LSTM depend on ``C``: with ``in_channels=None`` they are built by
:meth:`DeepConvLSTM.build` once the data says how many channels a cohort has (3, 6, 9 ...).

Initialisation follows mcfly's Keras graph: Conv2D kernels ``lecun_uniform`` (mcfly's
``weightinit``), the time-distributed Dense kernel Keras' default ``glorot_uniform``, every
bias zero; LSTMs as Keras builds them - one glorot-uniform draw over the whole four-gate input
kernel ``(input, 4 * units)``, one orthogonal draw over the whole recurrent kernel
``(units, 4 * units)`` and ``unit_forget_bias``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from core.checks import check_range

# Keras BatchNormalization defaults (momentum 0.99 -> torch 0.01, epsilon 1e-3).
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3


def _lecun_uniform_(weight: torch.Tensor) -> None:
    """mcfly's ``weightinit='lecun_uniform'``: U(-sqrt(3 / fan_in), +sqrt(3 / fan_in))."""
    fan_in = weight[0].numel()
    bound = math.sqrt(3.0 / fan_in)
    nn.init.uniform_(weight, -bound, bound)


def _keras_lstm_init_(lstm: nn.LSTM) -> None:
    """Keras LSTM defaults, each kernel drawn as ONE matrix over all four gates as Keras does:
    glorot-uniform on the input kernel (fan_in = input size, fan_out = 4 * units, so the bound
    is sqrt(6 / (input + 4 * units)), not the per-gate sqrt(6 / (input + units))), orthogonal
    on the whole recurrent kernel (orthonormal columns of the (4 * units, units) torch weight
    = orthonormal rows of Keras' (units, 4 * units) kernel), zero bias except the forget gate
    (``unit_forget_bias=True``). Gate order i, f, g(c), o is the same in both frameworks."""
    hidden = lstm.hidden_size
    for name, param in lstm.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(param.data)  # torch (4H, in): fan_in=in, fan_out=4H
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(param.data)  # (4H, H): Q with orthonormal columns
        elif name.startswith("bias"):
            param.data.zero_()
            if name.startswith("bias_ih"):  # torch sums bias_ih and bias_hh: set one only
                param.data[hidden : 2 * hidden] = 1.0  # gate order i, f, g, o


class DeepConvLSTM(nn.Module):
    """mcfly's DeepConvLSTM on windows shaped (batch, time, channels); returns class logits.

    Args:
        in_channels: IMU channels per step (6 for accelerometer + gyroscope); ``None`` defers
            the two channel-dependent layers to :meth:`build` (the Lightning module calls it
            with the datamodule's channel count before training).
        num_classes: output classes (3: robust, pre-frail, frail).
        conv_filters: filters per Conv2D layer, e.g. ``[54]`` (mcfly: 1-10 layers of 10-100).
        lstm_units: units per LSTM layer, e.g. ``[29, 95, 94, 46]`` (mcfly: 1-5 of 10-100).
        dropout: dropout before the time-distributed dense layer (mcfly: 0.5).
        readout: ``"last"`` takes the last time step's prediction as mcfly does;
            ``"mean"`` averages the per-step logits over time.
    """

    def __init__(
        self,
        in_channels: int | None = None,
        num_classes: int = 3,
        conv_filters: Sequence[int] = (54,),
        lstm_units: Sequence[int] = (29, 95, 94, 46),
        dropout: float = 0.5,
        readout: str = "last",
    ) -> None:
        super().__init__()
        conv_filters, lstm_units = list(conv_filters), list(lstm_units)
        if (in_channels is not None and in_channels < 1) or num_classes < 2:
            raise ValueError(
                f"in_channels must be >= 1 and num_classes >= 2, got {in_channels}, {num_classes}"
            )
        if not conv_filters or not lstm_units:
            raise ValueError("conv_filters and lstm_units each need at least one layer size")
        if min(conv_filters) < 1 or min(lstm_units) < 1:
            raise ValueError(f"layer sizes must be positive: {conv_filters}, {lstm_units}")
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
        check_range("model.dropout", dropout, 0.0, 1.0, high_open=True)
        self.in_channels: int | None = None
        self.num_classes = num_classes
        self.readout = readout
        self.conv_filters, self.lstm_units = conv_filters, lstm_units

        self.input_norm: nn.Module | None = None
        blocks: list[nn.Module] = []
        prev = 1
        for filters in conv_filters:
            blocks += [
                nn.Conv2d(prev, filters, kernel_size=(3, 1), padding=(1, 0)),
                nn.BatchNorm2d(filters, eps=_BN_EPS, momentum=_BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            prev = filters
        self.conv = nn.Sequential(*blocks)

        self.lstms = nn.ModuleList()
        for prev, units in zip(lstm_units[:-1], lstm_units[1:]):
            self.lstms.append(nn.LSTM(prev, units, batch_first=True))
        self.dropout = nn.Dropout(dropout)
        # applied per step = TimeDistributed(Dense)
        self.head = nn.Linear(lstm_units[-1], num_classes)
        if in_channels is not None:
            self.build(in_channels)

    @property
    def built(self) -> bool:
        return self.in_channels is not None

    def build(self, in_channels: int) -> DeepConvLSTM:
        """Create the channel-dependent layers (input BatchNorm, first LSTM) for
        ``in_channels`` and initialise every layer; building twice with another count raises."""
        if self.in_channels is not None:
            if in_channels != self.in_channels:
                raise ValueError(
                    f"DeepConvLSTM was built for {self.in_channels} channels, data has "
                    f"{in_channels}; set model.in_channels=null to take it from the data"
                )
            return self
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = int(in_channels)
        self.input_norm = nn.BatchNorm1d(self.in_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        first = nn.LSTM(
            self.conv_filters[-1] * self.in_channels, self.lstm_units[0], batch_first=True
        )
        self.lstms.insert(0, first)
        self.reset_parameters()
        return self

    def reset_parameters(self) -> None:
        """mcfly / Keras initialisation: lecun-uniform conv kernels (mcfly's ``weightinit``),
        glorot-uniform dense kernel (Keras' default; mcfly passes no initialiser to the
        time-distributed Dense), whole-kernel LSTM init, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _lecun_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)  # Keras Dense default: glorot_uniform
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LSTM):
                _keras_lstm_init_(module)

    def regularized_weights(self) -> list[torch.Tensor]:
        """Kernels mcfly puts an L2 penalty on: every Conv2D and the dense layer (no biases,
        no LSTM weights)."""
        convs = [m.weight for m in self.conv if isinstance(m, nn.Conv2d)]
        return [*convs, self.head.weight]

    def l2_penalty(self) -> torch.Tensor:
        """Keras ``l2(rate)`` adds ``rate * sum(w**2)``; this returns the sum, the caller scales."""
        return sum(w.pow(2).sum() for w in self.regularized_weights())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, time, channels) -> logits (batch, num_classes)."""
        if not self.built:
            raise RuntimeError(
                "DeepConvLSTM has no channel count yet: call build(in_channels) (the Lightning "
                "module does this from the datamodule) or pass in_channels"
            )
        if x.ndim != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"expected (batch, time, {self.in_channels}) windows, got {tuple(x.shape)}"
            )
        batch, steps, channels = x.shape
        x = self.input_norm(x.transpose(1, 2))  # (B, C, T)
        x = self.conv(x.unsqueeze(1).transpose(2, 3))  # (B, 1, T, C) -> (B, F, T, C)
        x = x.permute(0, 2, 3, 1).reshape(batch, steps, -1)  # Keras Reshape: (T, C * F)
        for lstm in self.lstms:
            x, _ = lstm(x)
        logits = self.head(self.dropout(x))  # (B, T, K)
        return logits[:, -1] if self.readout == "last" else logits.mean(dim=1)
