"""Element-wise stages of the fused GMM layer, one block of states at a time.

Around its three matrix products the layer does element-wise work on the (states*g, d)
parameters and the (batch, states*g) densities. Each stage exists in two builds with one
signature and the same maths:

- ``EAGER``: in-place torch ops; runs on every device and dtype. Each op is one pass over the
  block, so a stage reads the block three to six times.
- the C++ build (``models.deep_gmm.cpu_kernels``): one vectorised pass per stage, float32 on
  CPU, compiled on first use, plus C++ drivers for the two block loops. At the paper's size it
  takes a forward + backward from 1.51-1.59x to 1.36-1.44x of a softmax layer's (one thread,
  session 3; ``benchmarks/deep_gmm_speed.py`` and docs/deep_gmm.md for today's figures).

A block holds states [s0, s1) component-major: parameter rows (g, n, d), densities (batch, g, n),
so the log-sum-exp over the g components reduces over an outer axis and vectorises along states.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GMMStages", "EAGER", "KERNEL_CHOICES", "pick_stages"]

LOG_2PI = math.log(2 * math.pi)
KERNEL_CHOICES = ("auto", "eager", "cpp")


@dataclass(frozen=True)
class GMMStages:
    """The four stages of one block; ``name`` is what logs and the benchmark report."""

    name: str
    # (mu3, lv3, log_w (g, S), w_block (g, n, 2d), s0, s1, log_floor, centre (d,), sync_free) ->
    # (const (g, n), floored): with m = mu - centre (the expansion centre, see gmm_function), w_block <- [m * prec,
    # prec], prec = exp(-max(lv, log_floor)); const = log w - (m^2 prec + log|Sigma| + d log 2 pi)
    # / 2; ``floored``: whether the floor may have clamped a variance (always True when sync_free
    # and there is a floor: the check would read a value back to the host).
    prepare: Callable[..., tuple[Tensor, bool]]
    # (comp3 (B, g, n) = x-dependent part of log(w N), const (g, n), total (B, S), out (B, S),
    # s0, s1): comp3 <- exp(comp3 + const - peak), total[:, s0:s1] <- its sum over g,
    # out[:, s0:s1] <- -log p(x|s).
    densities: Callable[[Tensor, Tensor, Tensor, Tensor, int, int], None]
    # (slab (B, g, n), scale (B, S), s0, s1) -> r_b (g, n): slab <- slab * scale[:, s0:s1] (in
    # place: the responsibilities) with subnormal values flushed to zero, r_b its sum over the batch.
    responsibilities: Callable[[Tensor, Tensor, int, int], Tensor]
    # (g_block (g, n, 2d) = [-r^T x, r^T x^2] of the centred x, mu3, lv3, w_block, r_b, grad_mu3 |
    # None, grad_lv3 | None, s0, s1, log_floor, mask, centre): writes the block's Eq. 2 gradients.
    param_grads: Callable[..., None]
    # Optional drivers that run a whole block loop themselves (the C++ build: no Python between
    # blocks); None: gmm_function's Python loops call the four stages above. Same signatures as
    # gmm_function.forward_blocks_py / backward_blocks_py without their first argument.
    forward_blocks: Callable[..., list[bool]] | None = None
    backward_blocks: Callable[..., None] | None = None


def _prepare_eager(
    mu3: Tensor,
    lv3: Tensor,
    log_w: Tensor,
    w_block: Tensor,
    s0: int,
    s1: int,
    log_floor: float | None,
    centre: Tensor,
    sync_free: bool,
) -> tuple[Tensor, bool]:
    dim = mu3.shape[-1]
    mu_b, lv_b = mu3[s0:s1].transpose(0, 1), lv3[s0:s1].transpose(0, 1)  # (g, n, d)
    mp, prec_b = w_block[..., :dim], w_block[..., dim:]
    torch.neg(lv_b, out=prec_b)
    # On CPU, clamp (and later mask) only the blocks with a variance under the floor: a max over
    # the block while it is in cache, instead of a clamp and a masked fill every step. Sync-free
    # (on an accelerator) always clamp: reading the max back would synchronise every step.
    clamp = log_floor is not None and (sync_free or bool(prec_b.amax() > -log_floor))
    if clamp:
        prec_b.clamp_max_(-log_floor)
    neg_lv_sum = prec_b.sum(-1)
    mc = mu_b - centre  # means relative to the expansion centre
    torch.mul(mc, prec_b.exp_(), out=mp)
    const = torch.linalg.vecdot(mp, mc).sub_(neg_lv_sum).add_(dim * LOG_2PI).mul_(-0.5)
    return const.add_(log_w[:, s0:s1]), clamp


def _densities_eager(
    comp3: Tensor, const: Tensor, total: Tensor, out: Tensor, s0: int, s1: int
) -> None:
    comp3.add_(const)
    peak = comp3.amax(dim=1, keepdim=True)
    expo = comp3.sub_(peak).exp_()  # w N / exp(peak); pi = expo / total (Eq. 3)
    tot = expo.sum(dim=1)
    total[:, s0:s1] = tot
    out[:, s0:s1] = tot.log_().add_(peak.squeeze(1)).neg_()


def _responsibilities_eager(slab: Tensor, scale: Tensor, s0: int, s1: int) -> Tensor:
    r3 = slab.mul_(scale[:, None, s0:s1])
    # Flush subnormals to zero: they feed two matrix products, which run up to 20x slower on
    # subnormal inputs on some CPUs (Intel with MKL), whatever the global FTZ/DAZ setting.
    r3.masked_fill_(r3.abs() < torch.finfo(r3.dtype).tiny, 0.0)
    return torch.sum(r3, dim=0)


def _param_grads_eager(
    g_block: Tensor,
    mu3: Tensor,
    lv3: Tensor,
    w_block: Tensor,
    r_b: Tensor,
    grad_mu3: Tensor | None,
    grad_lv3: Tensor | None,
    s0: int,
    s1: int,
    log_floor: float | None,
    mask: bool,
    centre: Tensor,
) -> None:
    dim = mu3.shape[-1]
    mu_b = mu3[s0:s1].transpose(0, 1) - centre  # relative to the expansion centre, as x
    prec = w_block[..., dim:]
    a, q = g_block[..., :dim], g_block[..., dim:]  # a = -r^T x, q = r^T x^2 (scratch)
    r_col = r_b.unsqueeze(-1)
    # grad_mu = prec (R mu - r^T x); grad_lv = R/2 - prec/2 sum_b r (x - mu)^2, with
    # sum_b r (x - mu)^2 = q + mu (a + (a + R mu)).
    q.addcmul_(mu_b, a)
    a.addcmul_(mu_b, r_col)  # a = R mu - r^T x
    if grad_lv3 is not None:
        q.addcmul_(mu_b, a)
        g_lv = grad_lv3[s0:s1].transpose(0, 1)
        torch.addcmul(r_col.mul(0.5), q, prec, value=-0.5, out=g_lv)
        if mask:
            g_lv.masked_fill_(lv3[s0:s1].transpose(0, 1) < log_floor, 0.0)  # floored: no gradient
    if grad_mu3 is not None:
        torch.mul(a, prec, out=grad_mu3[s0:s1].transpose(0, 1))


EAGER = GMMStages(
    "eager", _prepare_eager, _densities_eager, _responsibilities_eager, _param_grads_eager
)

# ``auto`` uses the C++ stages for layers of at least this many parameter elements
# (states * g * d): below it (the CPU presets, most tests) the one-off build is not worth it.
CPP_MIN_ELEMENTS = 1 << 20


def pick_stages(choice: str, x: Tensor, mu: Tensor, log_var: Tensor) -> GMMStages:
    """``eager``, ``cpp`` (C++ stages; float32 on CPU only), or ``auto`` (``cpp`` where it applies
    and the layer is paper-sized, else ``eager``). ``cpp`` falls back to ``eager`` with one
    warning when the build fails (no C++ compiler)."""
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {choice!r}")
    if choice == "eager":
        return EAGER
    applies = (
        x.device.type == "cpu"
        and mu.dtype == torch.float32
        and mu.is_contiguous()
        and log_var.is_contiguous()
    )
    if choice == "cpp" and not applies:
        raise ValueError(
            "kernels='cpp' needs contiguous float32 parameters on CPU, got "
            f"{mu.dtype} on {x.device.type}; use kernels='auto' or 'eager'"
        )
    if choice == "auto" and not (applies and mu.numel() >= CPP_MIN_ELEMENTS):
        return EAGER
    from .cpu_kernels import cpp_stages

    return cpp_stages() or EAGER
