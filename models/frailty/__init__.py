"""DeepConvLSTM for frailty classification from foot-IMU gait windows (Amjad et al.)."""

from models.frailty.deepconvlstm import DeepConvLSTM
from models.frailty.search_space import McflyDeepConvLSTMSpace, sample_architectures

__all__ = ["DeepConvLSTM", "McflyDeepConvLSTMSpace", "sample_architectures"]
