"""Eq. 2 of Phan et al. (2022): cross-entropy + L2 + temporal smoothness of the per-epoch CE."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import check_range


def per_epoch_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-y_l . log(y_hat_l)`` for every position: logits ``(B, L, C)``, targets ``(B, L)`` -> ``(B, L)``."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, L, C) and targets (B, L); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")


def smoothness_penalty(ce: torch.Tensor, order: int = 1) -> torch.Tensor:
    """Mean squared ``order``-th difference of the per-epoch CE along the sequence.

    Order 1 is ``1/(L-1) sum_l (ce_l - ce_{l+1})^2`` (Eq. 2), averaged over the batch too;
    order 2 is the "difference of first-order differences" the paper mentions.
    """
    if ce.shape[1] <= order:
        return ce.new_zeros(())
    return torch.diff(ce, n=order, dim=1).square().mean()


class TemporalSmoothnessLoss(nn.Module):
    """``mean(CE) + lambda ||theta||^2 + gamma * mean(dCE^2) [+ gamma2 * mean(d2CE^2)]``.

    ``gamma = 0`` is the plain SeqSleepNet objective (Eq. 1). The L2 term is explicit (as in the
    TensorFlow reference, not AdamW's decoupled decay) over the parameters passed to
    :meth:`forward` (the model's ``l2_parameters()``: everything but the filterbank).
    ``tf_l2_convention`` halves it like ``tf.nn.l2_loss``; the default follows the paper's
    ``lambda ||theta||_2^2``.
    """

    def __init__(
        self,
        lambda_l2: float = 1e-3,
        gamma: float = 0.0,
        gamma2: float = 0.0,
        tf_l2_convention: bool = False,
    ) -> None:
        super().__init__()
        for key, value in (("lambda_l2", lambda_l2), ("gamma", gamma), ("gamma2", gamma2)):
            check_range(f"loss.{key}", value, low=0)
        self.lambda_l2, self.gamma, self.gamma2 = float(lambda_l2), float(gamma), float(gamma2)
        self.l2_scale = 0.5 if tf_l2_convention else 1.0

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        params: Iterable[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Returns ``loss`` and its parts (``ce``, ``l2``, ``smooth``, ``smooth2``)."""
        ce_per_epoch = per_epoch_cross_entropy(logits, targets)
        ce = ce_per_epoch.mean()
        l2 = logits.new_zeros(())
        if params is not None and self.lambda_l2 > 0:
            l2 = self.l2_scale * sum(p.square().sum() for p in params)
        smooth = smoothness_penalty(ce_per_epoch, 1)
        smooth2 = smoothness_penalty(ce_per_epoch, 2) if self.gamma2 > 0 else logits.new_zeros(())
        loss = ce + self.lambda_l2 * l2 + self.gamma * smooth + self.gamma2 * smooth2
        return {"loss": loss, "ce": ce, "l2": l2, "smooth": smooth, "smooth2": smooth2}
