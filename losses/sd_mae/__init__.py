"""Losses of SD-MAE: masked MSE, self-distillation, NT-Xent, and their weighted sums."""

from losses.sd_mae.masked_mse import masked_mse
from losses.sd_mae.nt_xent import nt_xent
from losses.sd_mae.objective import METHODS, PretrainObjective
from losses.sd_mae.self_distill import SelfDistillLoss

__all__ = ["METHODS", "PretrainObjective", "SelfDistillLoss", "masked_mse", "nt_xent"]
