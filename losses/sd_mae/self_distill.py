"""Self-distillation on visible tokens (paper Eq. 2): decoder tokens teach encoder tokens."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class SelfDistillLoss(nn.Module):
    """Cross-entropy ``-softmax(p / t_t) . log_softmax(q / t_s)`` averaged over visible tokens.

    ``p`` are teacher logits (head on decoder visible tokens y_vis), ``q`` student logits (head on
    encoder visible tokens z'_vis). The paper writes plain softmaxes (temperatures 1, no
    centring); the authors' code sharpens the teacher (0.04), softens the student (0.1) and
    centres the teacher with an EMA (momentum 0.9) but lets gradient flow into the teacher.
    All three are options. Centring only all-reduces when a process group is initialised, so
    single-device runs never touch ``torch.distributed``.
    """

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        center_momentum: float = 0.9,
        use_centering: bool = True,
        stop_grad_teacher: bool = False,
    ) -> None:
        super().__init__()
        for key, val in (("student_temp", student_temp), ("teacher_temp", teacher_temp)):
            if val <= 0:
                raise ValueError(f"{key} must be > 0, got {val}")
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must lie in [0, 1), got {center_momentum}")
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.center_momentum = center_momentum
        self.use_centering = use_centering
        self.stop_grad_teacher = stop_grad_teacher
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``student``/``teacher`` logits (B, N_vis, K) -> scalar loss."""
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} != teacher {tuple(teacher.shape)}")
        if self.stop_grad_teacher:
            teacher = teacher.detach()
        t_logits = teacher - self.center if self.use_centering else teacher
        t_prob = F.softmax(t_logits.float() / self.teacher_temp, dim=-1)
        s_logp = F.log_softmax(student.float() / self.student_temp, dim=-1)
        loss = -(t_prob * s_logp).sum(dim=-1).mean()
        if self.use_centering and self.training:
            self._update_center(teacher.detach())
        return loss

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        """EMA of the mean teacher logit (over batch and tokens, and over ranks under DDP)."""
        flat = teacher.reshape(-1, teacher.shape[-1]).float()
        total = flat.sum(dim=0, keepdim=True)
        count = torch.tensor(float(flat.shape[0]), device=flat.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        mean = total / count
        self.center.mul_(self.center_momentum).add_(mean * (1 - self.center_momentum))
