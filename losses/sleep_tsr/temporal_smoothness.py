"""Eq. 2 of Phan et al. (2022): cross-entropy + L2 + temporal smoothness of the per-epoch CE."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import check_choice, check_range

L2_WEIGHTINGS = ("reference", "literal")


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
    """``mean(CE) + w * ||theta||^2 + gamma * mean(dCE^2) [+ gamma2 * mean(d2CE^2)]``.

    ``gamma = 0`` is the plain SeqSleepNet objective (Eq. 1). The L2 term is explicit (as in the
    TensorFlow reference, not AdamW's decoupled decay) over the parameters passed to
    :meth:`forward` (the model's ``l2_parameters()``: everything but the filterbank).

    ``l2_weighting`` sets ``w``:

    * ``reference`` (default): ``w = lambda / (2 B)`` for a batch of ``B`` sequences. The authors'
      code minimises ``sum_b mean_l CE + lambda * sum tf.nn.l2_loss(v)`` with
      ``tf.nn.l2_loss = ||v||^2 / 2``; divided by ``B`` (which Adam barely notices) that is this
      loss, so ``lambda = 1e-3`` weighs the L2 term as the published models were trained.
    * ``literal``: ``w = lambda``, Eq. 2 as printed (64x stronger at B = 32: the L2 term then
      outweighs the CE within a few hundred steps).
    """

    def __init__(
        self,
        lambda_l2: float = 1e-3,
        gamma: float = 0.0,
        gamma2: float = 0.0,
        l2_weighting: str = "reference",
    ) -> None:
        super().__init__()
        for key, value in (("lambda_l2", lambda_l2), ("gamma", gamma), ("gamma2", gamma2)):
            check_range(f"loss.{key}", value, low=0)
        check_choice("loss.l2_weighting", l2_weighting, L2_WEIGHTINGS)
        self.lambda_l2, self.gamma, self.gamma2 = float(lambda_l2), float(gamma), float(gamma2)
        self.l2_weighting = l2_weighting

    def l2_weight(self, batch_size: int) -> float:
        """The factor in front of ``||theta||^2`` for a batch of ``batch_size`` sequences."""
        if self.l2_weighting == "reference":
            return self.lambda_l2 / (2.0 * batch_size)
        return self.lambda_l2

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        params: Iterable[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Returns ``loss`` and its parts (``ce``, ``l2`` = ``||theta||^2``, ``smooth``, ``smooth2``)."""
        ce_per_epoch = per_epoch_cross_entropy(logits, targets)
        ce = ce_per_epoch.mean()
        l2 = logits.new_zeros(())
        if params is not None and self.lambda_l2 > 0:
            l2 = sum(p.square().sum() for p in params)
        smooth = smoothness_penalty(ce_per_epoch, 1)
        smooth2 = smoothness_penalty(ce_per_epoch, 2) if self.gamma2 > 0 else logits.new_zeros(())
        w = self.l2_weight(logits.shape[0])
        loss = ce + w * l2 + self.gamma * smooth + self.gamma2 * smooth2
        return {"loss": loss, "ce": ce, "l2": l2, "smooth": smooth, "smooth2": smooth2}
