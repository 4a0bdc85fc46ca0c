"""Fused negative log-likelihood of a bank of diagonal GMMs, one per state.

The Mahalanobis term is expanded into one matrix product, ``[x, -x^2/2] @ [mu * prec, prec]^T``,
so no (batch, states, g, d) tensor is ever built. The custom autograd function forms every
parameter gradient of Eq. 2 of the paper with two more matrix products (``r @ [mu * prec, prec]``
for the input, ``r^T @ [-x, x^2]`` for the parameters); the element-wise work around the three
products comes from ``gmm_stages`` (torch ops, or fused C++ on CPU).

On CPU the states are processed in blocks of about ``CPU_CHUNK_ROWS`` components (by default as
many as one core's L2 cache holds the weights of, ``l2_block_rows``): each block's ``[mu * prec,
prec]`` (2d floats a component: 0.56 MB at 256 components, d = 272) and densities stay in cache
between the matrix product and the element-wise work around it, and the scratch for the parameter-
gradient product is one block. Within a block the components are laid out component-major, (g,
states), so the log-sum-exp over g reduces over an outer axis and vectorises along the states (a
reduction over an innermost axis of 5 does not). Against the previous un-blocked form (six thin
matrix products, about 15 passes over (S*g, d) and (B, S*g) buffers) this is about 0.1x of a
softmax step faster.
With the C++ stages the two block loops themselves run in C++ (no Python between blocks).
"""

from __future__ import annotations

import functools
import math
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .gmm_stages import GMMStages, pick_stages

__all__ = ["gmm_nll", "naive_gmm_nll", "GMMNegLogLikelihood", "default_chunk_states"]

# Components per block on CPU; None sizes the block to this CPU's L2 cache (``l2_block_rows``).
CPU_CHUNK_ROWS: int | None = None
# Keep the (S*g, 2d) weights [mu * prec, prec] from forward to backward (True), or recompute
# them block by block in the backward into one block's scratch (False, the default): one more
# exp per parameter instead of writing and re-reading 26 MB at the paper's size, no slower in
# interleaved A/B runs, and 26 MB less at the peak (docs/deep_gmm.md, "Speed and memory").
SAVE_WEIGHTS = False


L2_SIZE_FILE = Path("/sys/devices/system/cpu/cpu0/cache/index2/size")


@functools.lru_cache(maxsize=1)
def l2_cache_bytes() -> int | None:
    """One core's L2 cache as Linux reports it ("512K", "2048K", "1M"), or None if unknown."""
    try:
        text = L2_SIZE_FILE.read_text().strip().upper()
    except OSError:
        return None
    units = {"K": 2**10, "M": 2**20}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError):
        return None


def l2_block_rows(dim: int) -> int:
    """Components per block whose weights ``[m * prec, prec]`` (2d floats each) fill one L2.

    The element-wise passes around each product then find the block in L2: on an AMD EPYC
    (512 KB) 256 rows at d = 272, 1.21-1.34x the softmax step against 1.27-1.57x for 1024 rows in
    five interleaved scans; on an Intel Xeon (2 MB) 1024 rows: 1.33x, against 1.42x / 1.36x at
    256 / 512 rows and 1.33x at 2048 (``benchmarks/deep_gmm_block_scan.py``, 2026-11-28). A power of two in [128, 1024]; 1024
    when the L2 size is unknown."""
    l2 = l2_cache_bytes()
    if not l2:
        return 1024
    rows = l2 / (2 * dim * 4)
    return int(min(1024, max(128, 2 ** round(math.log2(max(rows, 1))))))


# States per block are rounded down to a multiple of this (the widest vector, 16 floats): the C++
# stages vectorise along the states and finish a row's odd states in scalar code, which made the
# densities 1.36x slower per value at 51 states (256 rows, g = 5) than at 48 on the AMD EPYC.
STATE_MULTIPLE = 16


def default_chunk_states(states: int, comps: int, device: torch.device, dim: int = 272) -> int:
    """States per block: about ``CPU_CHUNK_ROWS`` (else ``l2_block_rows``) components on CPU,
    rounded down to a multiple of ``STATE_MULTIPLE`` states where there are that many; all
    states elsewhere."""
    if device.type != "cpu":
        return states
    rows = CPU_CHUNK_ROWS if CPU_CHUNK_ROWS is not None else l2_block_rows(dim)
    chunk = max(1, rows // comps)
    if chunk >= STATE_MULTIPLE:
        chunk -= chunk % STATE_MULTIPLE
    return min(states, chunk)


def _blocks(states: int, chunk: int):
    for s0 in range(0, states, chunk):
        yield s0, min(states, s0 + chunk)


def _block(flat: Tensor, s0: int, s1: int, per_state: int) -> Tensor:
    """States [s0, s1) of a buffer stored block by block (each block contiguous)."""
    return flat[s0 * per_state : s1 * per_state]


def forward_blocks_py(
    stages: GMMStages,
    x2: Tensor,
    mu3: Tensor,
    lv3: Tensor,
    log_w: Tensor,
    centre: Tensor,
    dens: Tensor,
    total: Tensor,
    out: Tensor,
    weights: Tensor,
    chunk: int,
    log_floor: float | None,
    save: bool,
    sync_free: bool,
) -> list[bool]:
    """The forward's block loop with any ``stages`` (the C++ build runs the same loop in C++).

    Per block: weights [mu * prec, prec] (into ``weights``, kept block by block when ``save``,
    else one block's scratch), one matrix product into the block's densities, log-sum-exp.
    Returns per block whether the variance floor may have clamped a variance."""
    batch, dim2 = x2.shape
    states, comps, _ = mu3.shape
    floored = []
    for s0, s1 in _blocks(states, chunk):
        n = s1 - s0
        w_flat = _block(weights, s0, s1, comps * dim2) if save else weights[: comps * n * dim2]
        w_block = w_flat.view(comps, n, dim2)
        const, clamped = stages.prepare(
            mu3, lv3, log_w, w_block, s0, s1, log_floor, centre, sync_free
        )
        floored.append(clamped)
        comp = _block(dens, s0, s1, batch * comps).view(batch, comps * n)
        torch.mm(x2, w_block.view(comps * n, dim2).t(), out=comp)
        stages.densities(comp.view(batch, comps, n), const, total, out, s0, s1)
    return floored


def backward_blocks_py(
    stages: GMMStages,
    dens: Tensor,
    scale: Tensor,
    xb: Tensor,
    mu3: Tensor,
    lv3: Tensor,
    log_w: Tensor,
    centre: Tensor,
    weights: Tensor,
    save: bool,
    r_sum: Tensor,
    rw: Tensor | None,
    gbuf: Tensor | None,
    grad_mu3: Tensor | None,
    grad_lv3: Tensor | None,
    chunk: int,
    log_floor: float | None,
    floored: list[bool],
    sync_free: bool,
) -> None:
    """The backward's block loop with any ``stages``: responsibilities (in place in ``dens``),
    their sums into ``r_sum`` (g, S), ``rw += r @ W`` and the parameter gradients of Eq. 2.
    Without ``save``, each block's weights are recomputed into the ``weights`` scratch."""
    batch, dim2 = xb.shape
    states, comps, _ = mu3.shape
    # Last block first: forward wrote it last, so its densities are likeliest to be still in
    # cache (the GMM layer is the network's last, its backward runs first).
    for block, (s0, s1) in reversed(list(enumerate(_blocks(states, chunk)))):
        n = s1 - s0
        slab = _block(dens, s0, s1, batch * comps).view(batch, comps, n)
        r_b = stages.responsibilities(slab, scale, s0, s1)  # (g, n); slab is now r
        r_sum[:, s0:s1] = r_b
        if rw is None and gbuf is None:
            continue
        r = slab.view(batch, comps * n)
        w_flat = _block(weights, s0, s1, comps * dim2) if save else weights[: comps * n * dim2]
        w_block = w_flat.view(comps, n, dim2)
        if not save:
            stages.prepare(mu3, lv3, log_w, w_block, s0, s1, log_floor, centre, sync_free)
        if rw is not None:
            rw.addmm_(r, w_block.view(comps * n, dim2))
        if gbuf is None:
            continue
        g_block = gbuf[: comps * n * dim2].view(comps, n, dim2)
        torch.mm(r.t(), xb, out=g_block.view(comps * n, dim2))
        stages.param_grads(
            g_block, mu3, lv3, w_block, r_b, grad_mu3, grad_lv3, s0, s1,
            log_floor, floored[block], centre,
        )  # fmt: skip


class GMMNegLogLikelihood(torch.autograd.Function):
    """L(x, s) = -log sum_i w_si N(x; mu_si, exp(lv_si)) for all states s at once.

    Memory: forward saves the (B, S*g) scaled densities and the (B, S) totals; with
    ``SAVE_WEIGHTS`` also the (S*g, 2d) weights [mu * prec, prec] of its matrix product, else
    backward recomputes them block by block into one block's scratch (see ``SAVE_WEIGHTS``).
    Backward writes the mean / log-variance gradients straight into their outputs. The block
    loops run in C++ with the C++ stages, in Python (``forward_blocks_py``) otherwise.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        mu: Tensor,
        log_var: Tensor,
        weight_logits: Tensor,
        log_floor: float | None,
        chunk: int,
        reuse_buffers: bool,
        stages: GMMStages,
        sync_free: bool,
    ) -> Tensor:
        batch, dim = x.shape
        states, comps = weight_logits.shape
        mu3, lv3 = mu.view(states, comps, dim), log_var.view(states, comps, dim)
        # Expand about the batch mean of x, not about 0: the expanded form's rounding error is
        # eps * sum (x - c)^2 / var, which is 4 nats at an offset of 20 and a variance of 1e-3
        # when c = 0 and stays at the direct form's level when c sits in the data.
        centre = x.mean(0)
        xc = x - centre
        x2 = torch.cat([xc, (xc * xc).mul_(-0.5)], dim=1)  # (B, 2d)
        log_w = torch.log_softmax(weight_logits, dim=-1).t()  # (g, S)
        # Densities are stored block by block, each block a contiguous (B, g, n) slab.
        dens = x.new_empty(batch * states * comps)
        total, out = x.new_empty(batch, states), x.new_empty(batch, states)
        save = SAVE_WEIGHTS
        blocks_kept = states if save else min(chunk, states)
        weights = x.new_empty(blocks_kept * comps * 2 * dim)  # block by block, each (g, n, 2d)
        run = stages.forward_blocks or partial(forward_blocks_py, stages)
        floored = run(
            x2, mu3, lv3, log_w, centre, dens, total, out, weights, chunk, log_floor, save,
            sync_free,
        )  # fmt: skip
        ctx.save_for_backward(
            xc, centre, mu, log_var, weight_logits, dens, total, weights if save else None
        )
        ctx.log_floor, ctx.floored, ctx.chunk, ctx.save = log_floor, floored, chunk, save
        ctx.reuse_buffers, ctx.used, ctx.stages = reuse_buffers, False, stages
        ctx.sync_free = sync_free
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        if ctx.used and ctx.reuse_buffers:
            raise RuntimeError(
                "gmm_nll: backward overwrote its saved densities; pass reuse_buffers=False "
                "to back-propagate through the same graph twice (retain_graph, gradcheck)"
            )
        ctx.used = True
        xc, centre, mu, log_var, weight_logits, dens, total, weights = ctx.saved_tensors
        if not ctx.reuse_buffers:
            dens = dens.clone()  # keep the saved densities for another backward
        stages: GMMStages = ctx.stages
        batch, dim = xc.shape
        states, comps = weight_logits.shape
        mu3, lv3 = mu.view(states, comps, dim), log_var.view(states, comps, dim)
        x = xc  # every product below works on the centred input (see forward)
        need_x, need_mu, need_lv, need_w = ctx.needs_input_grad[:4]
        need_params = need_mu or need_lv
        # dL(x, s)/d log(w N)_k = -pi_k: r = pi * grad, sign folded below
        scale = (grad_out / total).contiguous()
        xb = torch.cat([x.neg(), x * x], dim=1)  # (B, 2d): r^T @ xb = [-r^T x, r^T x^2]
        grad_mu = torch.empty_like(mu3) if need_mu else None
        grad_lv = torch.empty_like(lv3) if need_lv else None
        r_sum = x.new_empty(comps, states)
        rw = x.new_zeros(batch, 2 * dim) if need_x else None
        block_elems = comps * min(ctx.chunk, states) * 2 * dim
        gbuf = x.new_empty(block_elems) if need_params else None
        log_w = torch.log_softmax(weight_logits, dim=-1).t()
        if not ctx.save:
            weights = x.new_empty(block_elems)  # one block's scratch, recomputed per block
        run = stages.backward_blocks or partial(backward_blocks_py, stages)
        run(
            dens, scale, xb, mu3, lv3, log_w, centre, weights, ctx.save, r_sum, rw, gbuf,
            grad_mu, grad_lv, ctx.chunk, ctx.log_floor, ctx.floored, ctx.sync_free,
        )  # fmt: skip
        grad_x = torch.addcmul(rw[:, :dim].neg(), x, rw[:, dim:]) if need_x else None
        grad_w = None
        if need_w:
            g = r_sum.t().neg()  # (S, g)
            grad_w = g - torch.softmax(weight_logits, dim=-1) * g.sum(-1, keepdim=True)
        if grad_mu is not None:
            grad_mu = grad_mu.view_as(mu)
        if grad_lv is not None:
            grad_lv = grad_lv.view_as(log_var)
        return grad_x, grad_mu, grad_lv, grad_w, None, None, None, None, None


def gmm_nll(
    x: Tensor,
    mu: Tensor,
    log_var: Tensor,
    weight_logits: Tensor,
    var_floor: float | None = None,
    reuse_buffers: bool = True,
    chunk_states: int | None = None,
    kernels: str = "auto",
    sync_free: bool | None = None,
) -> Tensor:
    """-log p(x|s) for every state: x (B, d), mu/log_var (S*g, d), weight_logits (S, g) -> (B, S).

    ``var_floor`` clamps the variances from below (gradient zero where clamped) so collapsing
    components cannot drive the loss to NaN. ``reuse_buffers`` lets backward overwrite the saved
    densities (one (B, S*g) buffer less at the peak); turn it off to call backward twice.
    ``chunk_states`` sets the block size (states per block); the default suits the device.
    ``kernels`` picks the element-wise stages around the matrix products: ``eager`` (torch ops),
    ``cpp`` (fused C++, float32 on CPU, built on first use), or ``auto`` (``cpp`` for paper-size
    layers on CPU, else ``eager``); see ``gmm_stages``. ``sync_free`` (default: off CPU) never
    reads a value back to the host: the variance floor is applied to every block instead of only
    to blocks that need it, so an accelerator's queue never waits on the host.
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
    states, comps = weight_logits.shape
    if chunk_states is None:
        chunk_states = default_chunk_states(states, comps, x.device, x.shape[1])
    elif chunk_states < 1:
        raise ValueError(f"chunk_states must be >= 1, got {chunk_states}")
    log_floor = None if not var_floor else math.log(var_floor)
    # Under mixed precision the bottleneck output arrives in bf16/fp16; the likelihood (exp of
    # sums over d = 272 squared distances) needs the parameters' precision, so autocast is off here.
    stages = pick_stages(kernels, x, mu, log_var)
    if sync_free is None:
        sync_free = x.device.type != "cpu"
    with torch.autocast(x.device.type, enabled=False):
        return GMMNegLogLikelihood.apply(
            x.to(mu.dtype),
            mu,
            log_var,
            weight_logits,
            log_floor,
            int(chunk_states),
            reuse_buffers,
            stages,
            bool(sync_free),
        )


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
