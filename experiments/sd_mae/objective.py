"""Pre-training objectives: MAE, SD-MAE (Eq. 3) and MAE + self-contrastive (Eq. 5)."""

from __future__ import annotations

import torch
from torch import nn

from losses.sd_mae.masked_mse import masked_mse
from losses.sd_mae.nt_xent import nt_xent
from losses.sd_mae.self_distill import SelfDistillLoss
from models.sd_mae.head import DINOHead
from models.sd_mae.mae import MAEOutput

METHODS = ("mae", "sdmae", "mae_contrastive")


class PretrainObjective(nn.Module):
    """Owns the projection heads and returns ``{loss, mse, aux}`` for one MAE forward pass.

    ``alpha`` weights the reconstruction term: ``L = alpha * L_mse + (1 - alpha) * L_aux``
    (paper Eq. 3/5, alpha = beta = 0.2). The authors' code uses the opposite weighting
    (0.8 MSE / 0.2 distill); set ``alpha: 0.8`` to follow it.
    """

    def __init__(
        self,
        method: str = "sdmae",
        enc_dim: int = 384,
        dec_dim: int = 192,
        alpha: float = 0.2,
        head_out_dim: int = 4096,
        head_hidden_dim: int = 2048,
        head_bottleneck_dim: int = 256,
        head_layers: int = 3,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        center_momentum: float = 0.9,
        use_centering: bool = True,
        stop_grad_teacher: bool = False,
        token_reduce: str = "token",
        center_on: str = "logits",
        warmup_teacher_temp: float | None = None,
        warmup_teacher_temp_epochs: int = 0,
        sinkhorn_iters: int = 3,
        contrastive_tau: float = 0.5,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.method = method
        self.alpha = alpha
        self.tau = contrastive_tau
        if method != "mae":
            head = {
                "out_dim": head_out_dim,
                "hidden_dim": head_hidden_dim,
                "bottleneck_dim": head_bottleneck_dim,
                "nlayers": head_layers,
            }
            self.student_head = DINOHead(enc_dim, **head)
            self.teacher_head = DINOHead(dec_dim, **head)
        if method == "sdmae":
            self.distill = SelfDistillLoss(
                head_out_dim,
                student_temp,
                teacher_temp,
                center_momentum,
                use_centering,
                stop_grad_teacher,
                token_reduce,
                center_on,
                warmup_teacher_temp,
                warmup_teacher_temp_epochs,
                sinkhorn_iters,
            )

    def forward(self, out: MAEOutput) -> dict[str, torch.Tensor]:
        """Combine the reconstruction and (optional) visible-token terms."""
        mse = masked_mse(out.pred, out.target, out.mask)
        if self.method == "mae":
            return {"loss": mse, "mse": mse}
        q = self.student_head(out.enc_vis)
        p = self.teacher_head(out.dec_vis)
        extra: dict[str, torch.Tensor] = {}
        if self.method == "sdmae":
            aux = self.distill(q, p)
            # the term's scale: ln K when inactive (uniform teacher), teacher entropy below it
            d = self.distill
            extra["distill_teacher_entropy"] = torch.tensor(d.last_teacher_entropy)
            # a constant teacher (collapse): batch-mean entropy ~ per-row entropy, 1 prototype
            extra["distill_teacher_batch_entropy"] = torch.tensor(d.last_batch_entropy)
            extra["distill_teacher_prototypes"] = torch.tensor(float(d.last_prototypes))
            extra["distill_teacher_temp"] = torch.tensor(float(self.distill.teacher_temp))
        else:
            aux = nt_xent(q.mean(dim=1), p.mean(dim=1), self.tau)
        loss = self.alpha * mse + (1 - self.alpha) * aux
        return {"loss": loss, "mse": mse, "aux": aux, **extra}

    def set_epoch(self, epoch: int) -> None:
        """Advance epoch-based schedules (the teacher-temperature warm-up)."""
        if self.method == "sdmae":
            self.distill.set_epoch(epoch)
