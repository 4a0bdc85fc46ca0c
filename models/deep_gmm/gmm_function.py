"""Fused negative log-likelihood of a bank of diagonal GMMs, one per state.

The Mahalanobis term is expanded into two matrix products,
``-0.5 x^2 @ prec^T + x @ (mu * prec)^T``, so no (batch, states, g, d) tensor is ever built. The
custom autograd function forms every parameter gradient of Eq. 2 of the paper in one backward
pass (four matmuls plus a handful of in-place element-wise passes over the (states*g, d)
parameters), which is what makes the layer cost about as much as the softmax layer it replaces.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["gmm_nll", "naive_gmm_nll", "GMMNegLogLikelihood"]


class GMMNegLogLikelihood(torch.autograd.Function):
    """L(x, s) = -log sum_i w_si N(x; mu_si, exp(lv_si)) for all states s at once.

    Memory: forward saves the precisions and the (B, S*g) responsibilities; backward rebuilds
    mu * prec as a temporary and writes the mean / log-variance gradients in place, so the step
    peaks at about parameters + gradients + one (S*g, d) buffer + one (B, S*g) buffer.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        mu: Tensor,
        log_var: Tensor,
        weight_logits: Tensor,
        log_floor: float | None,
        reuse_buffers: bool,
    ) -> Tensor:
        batch, dim = x.shape
        states, comps = weight_logits.shape
        # On CPU, clamp (and later mask) only when some variance is under the floor: one cheap
        # amin pass instead of a clamp, a compare and a masked fill over (S*g, d) on every step.
        # On an accelerator always clamp: reading the amin back would synchronise every step.
        floored = log_floor is not None and (
            log_var.device.type != "cpu" or bool(log_var.detach().amin() < log_floor)
        )
        neg_lv = torch.neg(log_var)
        if floored:
            neg_lv.clamp_max_(-log_floor)  # variance floor: lv >= log(floor)
        lv_sum = neg_lv.sum(-1).neg_()  # log|Sigma_k|
        prec = neg_lv.exp_()  # (K, d) inverse variances, in the buffer of -lv
        mp = mu * prec  # (K, d)
        comp = x @ mp.t()  # (B, K): the two-matmul expansion of the Mahalanobis term
        comp.addmm_(x * x, prec.t(), alpha=-0.5)
        mahal_mu = mp.mul_(mu).sum(-1)  # mu^2 / var, reusing the mu * prec buffer
        del mp
        log_w = torch.log_softmax(weight_logits, dim=-1).reshape(-1)
        comp.add_(log_w - 0.5 * (mahal_mu + lv_sum + dim * math.log(2 * math.pi)))  # log w N
        comp3 = comp.view(batch, states, comps)
        peak = comp3.amax(dim=-1, keepdim=True)
        expo = comp3.sub_(peak).exp_()  # w N / exp(peak); pi = expo / total (Eq. 3)
        total = expo.sum(-1, keepdim=True)
        ctx.save_for_backward(x, mu, log_var, weight_logits, prec, expo, total)
        ctx.log_floor = log_floor if floored else None
        ctx.reuse_buffers = reuse_buffers
        ctx.used = False
        return torch.log(total).add_(peak).squeeze(-1).neg_()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        if ctx.used and ctx.reuse_buffers:
            raise RuntimeError(
                "gmm_nll: backward overwrote its saved responsibilities; pass reuse_buffers=False "
                "to back-propagate through the same graph twice (retain_graph, gradcheck)"
            )
        ctx.used = True
        x, mu, log_var, weight_logits, prec, expo, total = ctx.saved_tensors
        batch, dim = x.shape
        states, comps = weight_logits.shape
        # dL(x, s)/d log(w N)_k = -pi_k; r = pi * grad (the sign is folded into what follows).
        scale = grad_out.unsqueeze(-1) / total
        r3 = expo.mul_(scale) if ctx.reuse_buffers else expo * scale
        r = r3.view(batch, -1)
        r_sum = r.sum(0)  # (K,)
        grad_x = grad_mu = grad_lv = grad_w = None
        buf = None
        if ctx.needs_input_grad[0]:
            buf = torch.mul(mu, prec)
            grad_x = torch.addcmul(-(r @ buf), x, r @ prec)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            half = (0.5 * r_sum).unsqueeze(-1)  # = -dL/d const_k
            # an = -dL/d(mu*prec) + half * mu ; grad_lv starts as -dL/d prec of the quadratic term.
            an = torch.mm(r.t(), x.neg(), out=buf) if buf is not None else r.t() @ x.neg()
            an.addcmul_(mu, half)
            if ctx.needs_input_grad[2]:
                grad_lv = r.t() @ (x * x).mul_(-0.5)
                grad_lv.addcmul_(mu, an, value=-1.0).mul_(prec).add_(half)
                if ctx.log_floor is not None:
                    grad_lv.masked_fill_(log_var < ctx.log_floor, 0.0)  # floored: no gradient
            if ctx.needs_input_grad[1]:
                grad_mu = an.addcmul_(mu, half).mul_(prec)
        if ctx.needs_input_grad[3]:
            g = r_sum.view(states, comps).neg()
            grad_w = g - torch.softmax(weight_logits, dim=-1) * g.sum(-1, keepdim=True)
        return grad_x, grad_mu, grad_lv, grad_w, None, None


def gmm_nll(
    x: Tensor,
    mu: Tensor,
    log_var: Tensor,
    weight_logits: Tensor,
    var_floor: float | None = None,
    reuse_buffers: bool = True,
) -> Tensor:
    """-log p(x|s) for every state: x (B, d), mu/log_var (S*g, d), weight_logits (S, g) -> (B, S).

    ``var_floor`` clamps the variances from below (gradient zero where clamped) so collapsing
    components cannot drive the loss to NaN. ``reuse_buffers`` lets backward overwrite the saved
    responsibilities (one (B, S*g) buffer less at the peak); turn it off to call backward twice.
    """
    if x.dim() != 2 or mu.dim() != 2 or mu.shape != log_var.shape:
        raise ValueError(
            f"bad shapes: x {tuple(x.shape)}, mu {tuple(mu.shape)}, log_var {tuple(log_var.shape)}"
        )
    if mu.shape[0] != weight_logits.numel() or mu.shape[1] != x.shape[1]:
        raise ValueError(
            f"mu {tuple(mu.shape)} must be (states*g, d) with weight_logits {tuple(weight_logits.shape)}"
            f" and x of width {x.shape[1]}"
        )
    log_floor = None if not var_floor else math.log(var_floor)
    return GMMNegLogLikelihood.apply(x, mu, log_var, weight_logits, log_floor, reuse_buffers)


def naive_gmm_nll(
    x: Tensor,
    mu: Tensor,
    log_var: Tensor,
    weight_logits: Tensor,
    var_floor: float | None = None,
) -> Tensor:
    """Reference broadcast form that builds the (B, S, g, d) tensor; for tests and contrast only."""
    states, comps = weight_logits.shape
    lv = log_var if not var_floor else log_var.clamp_min(math.log(var_floor))
    mu4 = mu.view(1, states, comps, -1)
    lv4 = lv.view(1, states, comps, -1)
    diff = x.view(x.shape[0], 1, 1, -1) - mu4  # (B, S, g, d)
    log_n = -0.5 * ((diff * diff) * torch.exp(-lv4) + lv4 + math.log(2 * math.pi)).sum(-1)
    log_w = torch.log_softmax(weight_logits, dim=-1).unsqueeze(0)
    return -torch.logsumexp(log_w + log_n, dim=-1)
