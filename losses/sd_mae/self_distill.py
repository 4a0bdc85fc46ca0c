"""Self-distillation on visible tokens (paper Eq. 2): decoder tokens teach encoder tokens."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

TOKEN_REDUCE = ("token", "mean")
CENTER_ON = ("logits", "probs", "sinkhorn")


class SelfDistillLoss(nn.Module):
    """Cross-entropy ``-softmax((p - c) / t_t) . log_softmax(q / t_s)``.

    ``p`` are teacher logits (head on decoder visible tokens y_vis), ``q`` student logits (head on
    encoder visible tokens z'_vis). Where the paper's text and the authors' code differ, each is
    an option (docs/sd_mae.md says which preset uses which):

    - ``token_reduce``: ``"token"`` = one cross-entropy per visible token, averaged (the paper's
      text); ``"mean"`` = the head outputs are first averaged over the visible tokens, one
      cross-entropy per image (the authors' ``modeling_pretrain.py`` / ``loss.py``).
    - ``center_on``: the EMA centre ``c`` subtracted from the teacher logits is the mean teacher
      *logit* (DINO) with ``"logits"``, or the mean teacher *probability* with ``"probs"`` (the
      authors' code updates the centre with the softmax output), or no EMA centre but
      ``"sinkhorn"``: the teacher's distributions are balanced by ``sinkhorn_iters`` Sinkhorn-Knopp
      steps so that every output gets the same mass over the batch (DINOv2 / SwAV's option).
      It keeps a teacher whose logits barely differ between images from handing every image the
      same target (the collapse of the CPU preset, docs/sd_mae.md).
    - temperatures: the paper writes plain softmaxes (1 / 1); the authors' code uses student 0.1,
      teacher 0.04; ``warmup_teacher_temp`` ramps the teacher temperature linearly from that
      value to ``teacher_temp`` over ``warmup_teacher_temp_epochs`` (DINO / authors' option,
      0 epochs by default there). ``set_epoch`` moves the schedule.
    - ``stop_grad_teacher``: the authors' code lets gradient flow into the teacher.

    Centring only all-reduces when a process group is initialised, so single-device runs never
    touch ``torch.distributed`` (the authors' code crashes outside DDP).
    """

    def __init__(
        self,
        out_dim: int,
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
    ) -> None:
        super().__init__()
        if sinkhorn_iters < 1:
            raise ValueError(f"sinkhorn_iters must be >= 1, got {sinkhorn_iters}")
        for key, val in (("student_temp", student_temp), ("teacher_temp", teacher_temp)):
            if val <= 0:
                raise ValueError(f"{key} must be > 0, got {val}")
        if warmup_teacher_temp is not None and warmup_teacher_temp <= 0:
            raise ValueError(f"warmup_teacher_temp must be > 0, got {warmup_teacher_temp}")
        if warmup_teacher_temp_epochs < 0:
            raise ValueError(
                f"warmup_teacher_temp_epochs must be >= 0, got {warmup_teacher_temp_epochs}"
            )
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must lie in [0, 1), got {center_momentum}")
        if token_reduce not in TOKEN_REDUCE:
            raise ValueError(f"token_reduce must be one of {TOKEN_REDUCE}, got {token_reduce!r}")
        if center_on not in CENTER_ON:
            raise ValueError(f"center_on must be one of {CENTER_ON}, got {center_on!r}")
        self.student_temp = student_temp
        self.final_teacher_temp = teacher_temp
        self.warmup_teacher_temp = (
            teacher_temp if warmup_teacher_temp is None else warmup_teacher_temp
        )
        self.warmup_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.use_centering = use_centering
        self.stop_grad_teacher = stop_grad_teacher
        self.token_reduce = token_reduce
        self.center_on = center_on
        self.sinkhorn_iters = sinkhorn_iters
        self.out_dim = out_dim
        self.teacher_temp = self.warmup_teacher_temp if self.warmup_epochs else teacher_temp
        self.last_teacher_entropy = float("nan")
        self.last_batch_entropy = float("nan")
        self.last_prototypes = 0
        self.register_buffer("center", torch.zeros(1, out_dim))

    def set_epoch(self, epoch: int) -> None:
        """Teacher temperature for ``epoch`` (linear warm-up, then constant)."""
        if self.warmup_epochs and epoch < self.warmup_epochs:
            # np.linspace(warm, final, n)[epoch]: the last warm-up epoch reaches the final value
            frac = epoch / max(self.warmup_epochs - 1, 1)
            self.teacher_temp = self.warmup_teacher_temp + frac * (
                self.final_teacher_temp - self.warmup_teacher_temp
            )
        else:
            self.teacher_temp = self.final_teacher_temp

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``student``/``teacher`` logits (B, N_vis, K) -> scalar loss."""
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} != teacher {tuple(teacher.shape)}")
        if self.token_reduce == "mean":
            student, teacher = student.mean(dim=1), teacher.mean(dim=1)
        if self.stop_grad_teacher:
            teacher = teacher.detach()
        t_prob = self.teacher_probs(teacher)
        s_logp = F.log_softmax(student.float() / self.student_temp, dim=-1)
        loss = -(t_prob * s_logp).sum(dim=-1).mean()
        with torch.no_grad():
            self._collapse_stats(t_prob)
        if self.use_centering and self.training and self.center_on != "sinkhorn":
            stat = t_prob if self.center_on == "probs" else teacher
            self._update_center(stat.detach())
        return loss

    def teacher_probs(self, teacher: torch.Tensor) -> torch.Tensor:
        """Centred (or balanced), sharpened teacher distributions; the centre is not updated."""
        if self.use_centering and self.center_on == "sinkhorn":
            return self._sinkhorn(teacher.float() / self.teacher_temp)
        t_logits = teacher - self.center if self.use_centering else teacher
        return F.softmax(t_logits.float() / self.teacher_temp, dim=-1)

    def _sinkhorn(self, scores: torch.Tensor) -> torch.Tensor:
        """Rows of ``softmax(scores)`` rebalanced so each output's total mass is rows / K.

        Alternately normalises the K outputs (each to 1/K of the mass) and the rows (each to
        1/rows), ``sinkhorn_iters`` times, over the batch (and all ranks in DDP); returns one
        distribution per row. Differentiable, so ``stop_grad_teacher=False`` trains the teacher
        through it. The max is subtracted before ``exp`` (the scale cancels in the first step).
        """
        shape = scores.shape
        flat = scores.reshape(-1, shape[-1])
        q = torch.exp(flat - flat.max())
        n_rows = torch.tensor(float(flat.shape[0]), device=flat.device)
        ddp = dist.is_available() and dist.is_initialized()
        if ddp:
            dist.all_reduce(n_rows)
        k = flat.shape[-1]
        for _ in range(self.sinkhorn_iters):
            col = q.sum(dim=0, keepdim=True)
            if ddp:
                col = col.detach().clone()
                dist.all_reduce(col)
            q = q / col.clamp_min(torch.finfo(q.dtype).tiny) / k
            q = q / q.sum(dim=1, keepdim=True) / n_rows
        return (q * n_rows).reshape(shape)

    @torch.no_grad()
    def _collapse_stats(self, t_prob: torch.Tensor) -> None:
        """What tells an active term from a collapsed one (docs/sd_mae.md, "collapse").

        ``last_teacher_entropy``: mean entropy of one teacher distribution (0 = one-hot,
        ``ln K`` = uniform). ``last_batch_entropy``: entropy of the teacher distribution averaged
        over the rows (images, or tokens with ``token_reduce="token"``): close to the former when
        every row gets the same distribution (a constant teacher carries no signal about the
        image). ``last_prototypes``: how many distinct outputs are some row's argmax.
        """
        flat = t_prob.reshape(-1, t_prob.shape[-1]).float()
        ent = -(flat * flat.clamp_min(1e-12).log()).sum(dim=-1).mean()
        mean = flat.mean(dim=0)
        self.last_teacher_entropy = float(ent)
        self.last_batch_entropy = float(-(mean * mean.clamp_min(1e-12).log()).sum())
        self.last_prototypes = int(flat.argmax(dim=-1).unique().numel())

    @property
    def uniform_ce(self) -> float:
        """``ln K``: the value of the term when both distributions are uniform (inactive)."""
        return math.log(self.out_dim)

    @torch.no_grad()
    def _update_center(self, stat: torch.Tensor) -> None:
        """EMA of the mean teacher logit / probability (over batch, tokens, and ranks in DDP)."""
        flat = stat.reshape(-1, stat.shape[-1]).float()
        total = flat.sum(dim=0, keepdim=True)
        count = torch.tensor(float(flat.shape[0]), device=flat.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        mean = total / count
        self.center.mul_(self.center_momentum).add_(mean * (1 - self.center_momentum))
