"""SeqSleepNet (Phan et al., 2019): hierarchical RNN for sequence-to-sequence sleep staging."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from models.sleep_tsr.attention import AttentionPool
from models.sleep_tsr.bn_lstm import BNLSTM
from models.sleep_tsr.filterbank import LearnableFilterbank


class _PlainBiLSTM(nn.Module):
    """``nn.LSTM`` returning only the output sequence (drop-in for :class:`BNLSTM`)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class SeqSleepNet(nn.Module):
    """Input ``(batch, L, T=29, F=129)`` log-spectrogram sequences -> logits ``(batch, L, C)``.

    Epoch encoder (per epoch): learnable filterbank -> biLSTM over the T frames (recurrent BN)
    -> attention pooling. Sequence encoder: biLSTM over the L epoch embeddings -> a linear
    classifier shared by all positions. With the paper's settings it has ~1.64e5 parameters.
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
    ) -> None:
        super().__init__()
        if epoch_rnn not in ("bn_lstm", "lstm"):
            raise ValueError(f"model.epoch_rnn={epoch_rnn!r}: choose 'bn_lstm' or 'lstm'")
        self.num_classes = num_classes
        self.filterbank = LearnableFilterbank(n_bins, n_filters, sample_rate)
        self.epoch_rnn = (
            BNLSTM(n_filters, epoch_hidden)
            if epoch_rnn == "bn_lstm"
            else _PlainBiLSTM(n_filters, epoch_hidden)
        )
        self.attention = AttentionPool(2 * epoch_hidden, attention_size)
        self.seq_rnn = nn.LSTM(2 * epoch_hidden, seq_hidden, batch_first=True, bidirectional=True)
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
        out, _ = self.seq_rnn(self.dropout(emb))
        return self.classifier(self.dropout(out))

    def l2_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters under the L2 penalty of Eq. 2: all but the filterbank gains."""
        for name, param in self.named_parameters():
            if not name.startswith("filterbank."):
                yield param
