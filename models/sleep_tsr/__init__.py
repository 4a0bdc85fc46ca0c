"""SeqSleepNet and its parts (sleep_tsr paper)."""

from models.sleep_tsr.attention import AttentionPool
from models.sleep_tsr.bn_lstm import BNLSTM
from models.sleep_tsr.filterbank import LearnableFilterbank, triangular_filterbank
from models.sleep_tsr.seqsleepnet import SeqSleepNet

__all__ = ["AttentionPool", "BNLSTM", "LearnableFilterbank", "SeqSleepNet", "triangular_filterbank"]
