"""Losses of SD-MAE on tensors: masked MSE, self-distillation, NT-Xent.

Their weighted sum with the learnable heads (Eq. 3 / 5) is ``experiments.sd_mae.objective``.
"""

from losses.sd_mae.masked_mse import masked_mse
from losses.sd_mae.nt_xent import nt_xent
from losses.sd_mae.self_distill import SelfDistillLoss

__all__ = ["SelfDistillLoss", "masked_mse", "nt_xent"]
