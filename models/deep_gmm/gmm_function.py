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


def _floor_mask(log_var: Tensor, log_floor: float | None) -> Tensor | None:
    return None if log_floor is None else log_var >= log_floor


class GMMNegLogLikelihood(torch.autograd.Function):
    """L(x, s) = -log sum_i w_si N(x; mu_si, exp(lv_si)) for all states s at once."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        mu: Tensor,
        log_var: Tensor,
        weight_logits: Tensor,
        log_floor: float | None,
    ) -> Tensor:
        batch, dim = x.shape
        states, comps = weight_logits.shape
        lv = log_var if log_floor is None else log_var.clamp_min(log_floor)
        prec = torch.exp(-lv)  # (K, d) inverse variances
        mp = mu * prec  # (K, d)
        log_w = torch.log_softmax(weight_logits, dim=-1).reshape(-1)
        # Per-component constant: log w - 0.5 (mu^2/var + log|Sigma| + d log 2 pi).
        const = torch.linalg.vecdot(mu, mp) + lv.sum(-1)
        bias = log_w - 0.5 * (const + dim * math.log(2 * math.pi))
        comp = torch.addmm(bias, x, mp.t())  # (B, K)
        comp.addmm_(x * x, prec.t(), alpha=-0.5)
        comp3 = comp.view(batch, states, comps)
        lse = torch.logsumexp(comp3, dim=-1)  # (B, S) = log p(x|s)
        # Responsibilities pi_i(x, s) of Eq. 3, formed in place to save a (B, K) buffer.
        resp = comp3.sub_(lse.unsqueeze(-1)).exp_()
        ctx.save_for_backward(x, mu, log_var, weight_logits, prec, mp, resp)
        ctx.log_floor = log_floor
        return lse.neg_()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, mu, log_var, weight_logits, prec, mp, resp = ctx.saved_tensors
        batch, dim = x.shape
        states, comps = weight_logits.shape
        # dL/dlog(w N)_k = -pi_k; chain with the incoming gradient of L(x, s).
        r = (resp * grad_out.unsqueeze(-1)).neg_().view(batch, states * comps)  # (B, K)
        r_sum = r.sum(0)  # (K,)
        grad_x = grad_mu = grad_lv = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = r @ mp
            grad_x.addcmul_(x, r @ prec, value=-1.0)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dconst = (-0.5 * r_sum).unsqueeze(-1)  # gradient wrt the per-component constant
            d_mp = r.t() @ x  # (K, d)
            if ctx.needs_input_grad[1]:
                grad_mu = d_mp * prec
                grad_mu.addcmul_(mp, 2.0 * dconst)
            if ctx.needs_input_grad[2]:
                # -dprec * prec with dprec = -0.5 r^T x^2 + d_mp * mu + dconst * mu^2.
                grad_lv = r.t() @ (x * x)
                grad_lv.mul_(0.5).mul_(prec)
                d_mp.addcmul_(mu, dconst)
                grad_lv.addcmul_(mp, d_mp, value=-1.0).add_(dconst)
                mask = _floor_mask(log_var, ctx.log_floor)
                if mask is not None:
                    grad_lv.mul_(mask)
        if ctx.needs_input_grad[3]:
            g = r_sum.view(states, comps)
            w = torch.softmax(weight_logits, dim=-1)
            grad_w = g - w * g.sum(-1, keepdim=True)
        return grad_x, grad_mu, grad_lv, grad_w, None


def gmm_nll(
    x: Tensor,
    mu: Tensor,
    log_var: Tensor,
    weight_logits: Tensor,
    var_floor: float | None = None,
) -> Tensor:
    """-log p(x|s) for every state: x (B, d), mu/log_var (S*g, d), weight_logits (S, g) -> (B, S).

    ``var_floor`` clamps the variances from below (gradient zero where clamped) so collapsing
    components cannot drive the loss to NaN.
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
    return GMMNegLogLikelihood.apply(x, mu, log_var, weight_logits, log_floor)


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
