"""SeqSleepNet (Phan et al., 2019): hierarchical RNN for sequence-to-sequence sleep staging."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from core.checks import ConfigError
from models.sleep_tsr.attention import AttentionPool
from models.sleep_tsr.bn_lstm import BNLSTM, KERNELS, STATS
from models.sleep_tsr.filterbank import LearnableFilterbank


class _PlainBiLSTM(nn.Module):
    """``nn.LSTM`` returning only the output sequence (drop-in for :class:`BNLSTM`)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


RNNS = ("bn_lstm", "lstm")


class SeqSleepNet(nn.Module):
    """Input ``(batch, L, T=29, F=129)`` log-spectrogram sequences -> logits ``(batch, L, C)``.

    Epoch encoder (per epoch): learnable filterbank -> biLSTM over the T frames -> attention
    pooling. Sequence encoder: biLSTM over the L epoch embeddings -> a linear classifier shared
    by all positions. Both biLSTMs use recurrent batch norm by default, as both reference repos
    do (``lstm``: plain ``nn.LSTM``). With the paper's settings it has 164,133 parameters.
    ``bn_kernels``: ``auto`` runs the recurrent-BN step as C++ kernels on CPU (built on first
    use, torch ops if that fails), ``eager`` as torch ops (same maths).
    """

    def __init__(
        self,
        n_bins: int = 129,
        n_filters: int = 32,
        sample_rate: float = 100.0,
        epoch_hidden: int = 64,
        attention_size: int = 64,
        seq_hidden: int = 64,
        num_classes: int = 5,
        dropout: float = 0.25,
        epoch_rnn: str = "bn_lstm",
        seq_rnn: str = "bn_lstm",
        n_frames: int = 29,
        seq_len: int = 20,
        bn_stats: str = "per_step",
        bn_momentum: float = 0.05,
        bn_eps: float = 1e-5,
        bn_kernels: str = "auto",
    ) -> None:
        super().__init__()
        for key, value, allowed in (
            ("epoch_rnn", epoch_rnn, RNNS),
            ("seq_rnn", seq_rnn, RNNS),
            ("bn_stats", bn_stats, STATS),
            ("bn_kernels", bn_kernels, KERNELS),
        ):
            if value not in allowed:
                raise ConfigError(f"model.{key}", f"got {value!r}; allowed values: {allowed}")
        self.num_classes = num_classes
        self.filterbank = LearnableFilterbank(n_bins, n_filters, sample_rate)

        def rnn(kind: str, size_in: int, hidden: int, steps: int) -> nn.Module:
            if kind == "lstm":
                return _PlainBiLSTM(size_in, hidden)
            return BNLSTM(
                size_in, hidden, True, steps, bn_stats, bn_momentum, bn_eps, kernels=bn_kernels
            )

        self.epoch_rnn = rnn(epoch_rnn, n_filters, epoch_hidden, n_frames)
        self.attention = AttentionPool(2 * epoch_hidden, attention_size)
        self.seq_rnn = rnn(seq_rnn, 2 * epoch_hidden, seq_hidden, seq_len)
        self.classifier = nn.Linear(2 * seq_hidden, num_classes)
        self.dropout = nn.Dropout(dropout)

    def embed_epochs(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, F)`` epochs -> ``(N, 2 * epoch_hidden)`` embeddings."""
        z = self.dropout(self.filterbank(x))
        z = self.dropout(self.epoch_rnn(z))
        return self.attention(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, seq_len, t, f = x.shape
        emb = self.embed_epochs(x.reshape(b * seq_len, t, f)).reshape(b, seq_len, -1)
        out = self.seq_rnn(self.dropout(emb))
        return self.classifier(self.dropout(out))

    def l2_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters under the L2 penalty of Eq. 2: all but the filterbank gains."""
        for name, param in self.named_parameters():
            if not name.startswith("filterbank."):
                yield param
