"""Bidirectional LSTM with recurrent batch normalization (Cooijmans et al., 2017).

Why not a loop over ``nn.LSTMCell``: on CPU such a loop costs several times ``nn.LSTM``,
because autograd records ~30 small nodes per step and zero-fills full-size gradients. Here

* both directions advance together as one batched matmul per step;
* the whole layer is one ``autograd.Function`` with a hand-written backward ("fused cell"):
  parameter gradients are accumulated step by step while the (D, B, 4H) tiles are hot (one
  (T, D, B, 4H) gradient buffer was measured slower: 38 MB is above glibc's mmap threshold, so
  it is a fresh mapping, i.e. page faults, on every call);
* on CPU (float32/float64, ``kernels="auto"``) everything between the matrix products of a
  step, BNs, gates and cell, forward and backward, is one C++ kernel call
  (``csrc/bn_lstm_cpu.cpp``, built on first use by :mod:`.bn_lstm_kernels`): a few vectorised
  passes instead of ~25 torch ops forward and ~35 backward, which made the whole SeqSleepNet
  step 1.6-2.4x an ``nn.LSTM`` step. Elsewhere (GPU, no compiler, ``kernels="eager"``) the same
  loop runs those torch ops: the hoisted input GEMM and BN, the four gate nonlinearities as one
  contiguous sigmoid (tanh = 2 sigmoid(2x) - 1).

The cell is the authors' (``bnlstm.py`` of pquochuy/SeqSleepNet, after Cooijmans et al.):
``z = BN_x(x W_ih; scale, no offset) + BN_h(h W_hh; scale, offset)``, forget-gate offset 1,
``c' = sig(f) c + sig(i) tanh(g)``, ``h' = sig(o) tanh(BN_c(c'; scale, offset))``, every BN
scale starting at 0.1, eps 1e-5. Training normalises with the batch statistics of each time
step; the population statistics used in eval are kept *per time step* (one slot per step up to
``max_steps``, later steps share the last slot) with decay 0.95, as the reference does;
``stats="time_averaged"`` keeps one slot fed with the step average instead.
:func:`bn_lstm_reference` is the straightforward autograd version of the same maths; tests
check both agree, gradients and statistics included.
"""

from __future__ import annotations

import torch
from torch import nn

from models.sleep_tsr.bn_lstm_kernels import cpp_kernels

Stats = tuple[torch.Tensor, torch.Tensor]


def _bn_inplace(
    x: torch.Tensor, dim: int, eps: float, fixed: Stats | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise ``x`` over ``dim`` in place (batch stats, or ``fixed`` running stats).

    Returns ``(rstd, mean, var)``; ``x`` then holds ``x_hat``.
    """
    if fixed is None:
        mean = x.mean(dim, keepdim=True)
        x.sub_(mean)
        var = (x * x).mean(dim, keepdim=True)
    else:
        mean, var = fixed
        x.sub_(mean)
    rstd = (var + eps).rsqrt_()
    x.mul_(rstd)
    return rstd, mean, var


def _bn_backward(
    d_hat: torch.Tensor, x_hat: torch.Tensor, rstd: torch.Tensor, dim: int, batch_stats: bool
) -> torch.Tensor:
    """Gradient through ``x_hat = (x - mean(x)) * rstd`` over ``dim`` (in place on ``d_hat``)."""
    if not batch_stats:
        return d_hat.mul_(rstd)
    m1 = d_hat.mean(dim, keepdim=True)
    m2 = (d_hat * x_hat).mean(dim, keepdim=True)
    return d_hat.sub_(m1).sub_(x_hat * m2).mul_(rstd)


def _forward_cpp(
    ctx,
    ext,
    xs,
    w_ih,
    ih_scale,
    offset,
    w_hh,
    hh_scale,
    c_scale,
    c_offset,
    running,
    batch_stats,
    eps,
    hs,
):  # noqa: ANN001
    """Forward of :class:`_BNLSTMFunction` with the C++ step kernel (float32/64 CPU).

    The input product is one small GEMM per step rather than one hoisted GEMM: a hoisted
    (D, T, B, 4H) product is 38 MB at the paper's size, above glibc's mmap threshold, so it
    is a fresh mapping (page faults) every call, while per-step tiles are reused heap blocks.
    """
    d, t_len, b, _ = xs.shape
    h = w_hh.shape[1]
    slots = running[0].shape[0]
    stats = tuple(r.new_zeros((t_len, *r.shape[1:])) for r in running)  # (T, D, 1, size)
    params = [p.contiguous() for p in (ih_scale, offset, hh_scale, c_scale, c_offset)]
    c = xs.new_zeros(d, b, h)
    saved = []
    for t in range(t_len):
        xw = torch.bmm(xs[:, t], w_ih)  # -> x_hat in place
        a = torch.bmm(hs[t], w_hh)  # -> a_hat in place
        act = torch.empty_like(a)
        c_new, c_hat, tc = torch.empty_like(c), torch.empty_like(c), torch.empty_like(c)
        r_x, r_a, r_c = a.new_empty(d, 1, 4 * h), a.new_empty(d, 1, 4 * h), c.new_empty(d, 1, h)
        k = min(t, slots - 1)
        moments = [s[t] for s in stats] if batch_stats else [r[k] for r in running]
        ext.forward_step(xw, a, *params, c, act, c_new, c_hat, tc, hs[t + 1], *moments,
                         r_x, r_a, r_c, batch_stats, eps)  # fmt: skip
        saved.append((xw, a, act, c, c_hat, tc, r_x, r_a, r_c))
        c = c_new
    ctx.save_for_backward(xs, w_ih, w_hh, hs, *params)
    ctx.steps, ctx.batch_stats = saved, batch_stats
    ctx.mark_non_differentiable(*stats)
    return (hs[1:], *stats)


def _backward_cpp(ctx, d_out):  # noqa: ANN001
    """Backward of :func:`_forward_cpp`: C++ step kernel between torch's GEMMs."""
    xs, w_ih, w_hh, hs, ih_scale, offset, hh_scale, c_scale, c_offset = ctx.saved_tensors
    d, t_len, b, _ = xs.shape
    d_xs = xs.new_empty(t_len, d, b, xs.shape[3])
    d_w_ih, d_w_hh = torch.zeros_like(w_ih), torch.zeros_like(w_hh)
    grads = [torch.zeros_like(p) for p in (ih_scale, offset, hh_scale, c_scale, c_offset)]
    dh, dc = torch.zeros_like(hs[0]), torch.zeros_like(hs[0])
    w_hh_t, w_ih_t = w_hh.transpose(1, 2), w_ih.transpose(1, 2)
    for t in reversed(range(t_len)):
        x_hat, a_hat, act, c_prev, c_hat, tc, r_x, r_a, r_c = ctx.steps[t]
        dh.add_(d_out[t])
        da, dx = torch.empty_like(act), torch.empty_like(act)
        ext = ctx.ext
        ext.backward_step(dh, dc, act, c_prev, c_hat, tc, x_hat, a_hat, r_x, r_a, r_c, ih_scale,
                          hh_scale, c_scale, da, dx, *grads, ctx.batch_stats)  # fmt: skip
        d_w_hh.baddbmm_(hs[t].transpose(1, 2), da)
        dh = torch.bmm(da, w_hh_t)
        d_w_ih.baddbmm_(xs[:, t].transpose(1, 2), dx)
        torch.bmm(dx, w_ih_t, out=d_xs[t])
    d_ih, d_off, d_hh, d_cs, d_co = grads
    return (d_xs.transpose(0, 1), d_w_ih, d_ih, d_off, d_w_hh, d_hh, d_cs, d_co,
            None, None, None)  # fmt: skip


class _BNLSTMFunction(torch.autograd.Function):
    """``xs`` (D, T, B, I), each direction already in its own time order -> (T, D, B, H).

    ``running``: population (mean, var) of the three batch norms, each ``(slots, D, 1, size)``;
    step t uses slot ``min(t, slots - 1)`` in eval. Extra outputs (not differentiable): the
    batch statistics of every step, ``(T, D, 1, size)`` each (zeros in eval). Gate order is
    (i, f, o, g): one sigmoid covers three. ``ext``: the C++ step kernels, or None for the
    torch-op step. Everything but the input GEMM is done step by step on cache-sized
    (D, B, 4H) tensors, including the parameter gradients: full (T, D, B, 4H) gradient buffers
    cost more in page faults than they save on CPU.
    """

    @staticmethod
    def forward(
        ctx,
        xs,
        w_ih,
        ih_scale,
        offset,
        w_hh,
        hh_scale,
        c_scale,
        c_offset,
        running,
        batch_stats,
        eps,
        ext,
    ):  # noqa: ANN001
        d, t_len, b, _ = xs.shape
        h = w_hh.shape[1]
        slots = running[0].shape[0]
        hs = xs.new_empty(t_len + 1, d, b, h)  # hs[t] = h_{t-1}; every step writes its slot
        hs[0].zero_()
        ctx.ext = ext
        if ext is not None:
            return _forward_cpp(ctx, ext, xs, w_ih, ih_scale, offset, w_hh, hh_scale, c_scale,
                                c_offset, running, batch_stats, eps, hs)  # fmt: skip
        c = xs.new_zeros(d, b, h)
        saved: list[tuple[torch.Tensor, ...]] = []
        # per-step batch statistics (T, D, 1, size) for the population estimates
        stats = tuple(r.new_zeros((t_len, *r.shape[1:])) for r in running)
        # Hoisted input projection: one GEMM over all steps and both directions, (D, T, B, 4H),
        # and its batch norm for all steps at once (statistics still per step, over the batch).
        xw = torch.bmm(xs.reshape(d, t_len * b, -1), w_ih).view(d, t_len, b, -1)
        if batch_stats:
            v_x, m_x = torch.var_mean(xw, dim=2, correction=0, keepdim=True)  # (D, T, 1, 4H)
            stats[0].copy_(m_x.transpose(0, 1))
            stats[1].copy_(v_x.transpose(0, 1))
        else:
            idx = torch.arange(t_len, device=xs.device).clamp_(max=slots - 1)
            m_x, v_x = running[0][idx].transpose(0, 1), running[1][idx].transpose(0, 1)
        r_x_all = (v_x + eps).rsqrt_()
        xw.sub_(m_x).mul_(r_x_all)  # in place: no second (D, T, B, 4H) buffer (page faults)
        for t in range(t_len):
            k = min(t, slots - 1)
            fh = None if batch_stats else (running[2][k], running[3][k])
            fc = None if batch_stats else (running[4][k], running[5][k])
            x_hat, r_x = xw[:, t], r_x_all[:, t]
            a_hat = torch.bmm(hs[t], w_hh)
            r_a, m_a, v_a = _bn_inplace(a_hat, 1, eps, fh)
            act = torch.addcmul(offset, x_hat, ih_scale).addcmul_(a_hat, hh_scale)
            # tanh(z) = 2 sigmoid(2z) - 1: one contiguous sigmoid for all four gates, and
            # ATen's CPU sigmoid is several times faster than its tanh.
            act[..., 3 * h :].mul_(2.0)
            act.sigmoid_()
            act[..., 3 * h :].mul_(2.0).sub_(1.0)
            i, f, o, gg = act.chunk(4, dim=2)
            c_prev = c
            c = f * c_prev
            c.addcmul_(i, gg)
            c_hat = c.clone()
            r_c, m_c, v_c = _bn_inplace(c_hat, 1, eps, fc)
            tc = torch.addcmul(c_offset, c_hat, c_scale).mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
            torch.mul(o, tc, out=hs[t + 1])
            saved.append((x_hat, r_x, a_hat, r_a, act, c_prev, c_hat, r_c, tc))
            if batch_stats:
                for acc, val in zip(stats[2:], (m_a, v_a, m_c, v_c)):
                    acc[t] = val
        ctx.save_for_backward(xs, w_ih, ih_scale, w_hh, hh_scale, c_scale, hs)
        ctx.steps, ctx.batch_stats = saved, batch_stats
        ctx.mark_non_differentiable(*stats)
        return (hs[1:], *stats)

    @staticmethod
    def backward(ctx, d_out, *_unused):  # noqa: ANN001
        if ctx.ext is not None:
            return (*_backward_cpp(ctx, d_out), None)
        xs, w_ih, ih_scale, w_hh, hh_scale, c_scale, hs = ctx.saved_tensors
        bs = ctx.batch_stats
        d, t_len, b, _ = xs.shape
        h = w_hh.shape[1]
        d_xs = torch.empty_like(xs)
        d_w_ih, d_w_hh = torch.zeros_like(w_ih), torch.zeros_like(w_hh)
        d_ih_scale, d_hh_scale = torch.zeros_like(ih_scale), torch.zeros_like(hh_scale)
        d_offset = torch.zeros_like(hh_scale)
        d_c_scale, d_c_offset = torch.zeros_like(c_scale), torch.zeros_like(c_scale)
        dh = d_out.new_zeros(d, b, h)
        dc_next = d_out.new_zeros(d, b, h)
        w_hh_t, w_ih_t = w_hh.transpose(1, 2), w_ih.transpose(1, 2)
        for t in reversed(range(t_len)):
            x_hat, r_x, a_hat, r_a, act, c_prev, c_hat, r_c, tc = ctx.steps[t]
            dh.add_(d_out[t])
            i, f, o, gg = act.chunk(4, dim=2)
            dz = torch.empty_like(act)
            dz_i, dz_f, dz_o, dz_g = dz.chunk(4, dim=2)
            torch.mul(dh, tc, out=dz_o).mul_(o - o * o)
            dcb = (dh * o).mul_(1 - tc * tc)
            d_c_scale.add_((dcb * c_hat).sum(1, keepdim=True))
            d_c_offset.add_(dcb.sum(1, keepdim=True))
            dc = _bn_backward(dcb.mul_(c_scale), c_hat, r_c, 1, bs).add_(dc_next)
            torch.mul(dc, c_prev, out=dz_f).mul_(f - f * f)
            torch.mul(dc, gg, out=dz_i).mul_(i - i * i)
            torch.mul(dc, i, out=dz_g).mul_(1 - gg * gg)
            dc_next = dc.mul_(f)
            d_offset.add_(dz.sum(1, keepdim=True))
            d_hh_scale.add_((dz * a_hat).sum(1, keepdim=True))
            d_ih_scale.add_((dz * x_hat).sum(1, keepdim=True))
            da = _bn_backward(dz * hh_scale, a_hat, r_a, 1, bs)
            d_w_hh.baddbmm_(hs[t].transpose(1, 2), da)
            dh = torch.bmm(da, w_hh_t)
            dx = _bn_backward(dz.mul_(ih_scale), x_hat, r_x, 1, bs)
            d_w_ih.baddbmm_(xs[:, t].transpose(1, 2), dx)
            d_xs[:, t] = torch.bmm(dx, w_ih_t)
        return (d_xs, d_w_ih, d_ih_scale, d_offset, d_w_hh, d_hh_scale, d_c_scale, d_c_offset,
                None, None, None, None)  # fmt: skip


def bn_lstm_reference(
    xs, w_ih, ih_scale, offset, w_hh, hh_scale, c_scale, c_offset, running, batch_stats, eps
):  # noqa: ANN001
    """The same layer as :class:`_BNLSTMFunction` as a straightforward autograd loop."""

    def bn(x: torch.Tensor, fixed: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if batch_stats:  # biased variance, as tf.nn.moments
            var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        else:
            mean, var = fixed
        return (x - mean) * torch.rsqrt(var + eps), mean, var

    d, t_len, b, _ = xs.shape
    h = w_hh.shape[1]
    hs, c = xs.new_zeros(d, b, h), xs.new_zeros(d, b, h)
    outs, stats = [], []
    for t in range(t_len):
        pop = [r[min(t, r.shape[0] - 1)] for r in running]
        x_hat, m_x, v_x = bn(torch.bmm(xs[:, t], w_ih), pop[0:2])
        a_hat, m_a, v_a = bn(torch.bmm(hs, w_hh), pop[2:4])
        z = x_hat * ih_scale + (a_hat * hh_scale + offset)
        i, f, o, gg = z.chunk(4, dim=2)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        c_hat, m_c, v_c = bn(c, pop[4:6])
        hs = torch.sigmoid(o) * torch.tanh(c_hat * c_scale + c_offset)
        outs.append(hs)
        stats.append((m_x, v_x, m_a, v_a, m_c, v_c))
    with torch.no_grad():
        if batch_stats:
            per_step = [torch.stack(s) for s in zip(*stats)]
        else:
            per_step = [r.new_zeros((t_len, *r.shape[1:])) for r in running]
    return (torch.stack(outs), *per_step)


STATS = ("per_step", "time_averaged")
_CPP_DTYPES = (torch.float32, torch.float64)
KERNELS = ("auto", "eager")


class BNLSTM(nn.Module):
    """(Bi)directional single-layer LSTM with BN on ``x W_ih``, ``h W_hh`` and the cell state.

    Input ``(batch, time, input_size)``, output ``(batch, time, D * hidden_size)`` with the
    forward direction first, like ``nn.LSTM(batch_first=True, bidirectional=True)``.
    Parameters per direction, as the reference cell: ``W_ih``, ``W_hh``, a BN scale on each of
    the three products, a BN offset on ``h W_hh`` (the gate bias; forget part starts at 1) and
    on the cell, no offset on ``x W_ih`` (it would duplicate the other one):
    ``4H (I + H) + 3 * 4H + 2H``. ``max_steps`` is the number of per-step population-statistic
    slots (29 frames in the epoch encoder, L = 20 in the sequence encoder); ``momentum`` is
    1 - the reference's decay 0.95. ``kernels="eager"`` skips the C++ step kernels (torch ops
    only). ``fused=False`` runs :func:`bn_lstm_reference` (plain
    autograd loop) instead of the hand-written backward.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bidirectional: bool = True,
        max_steps: int = 29,
        stats: str = "per_step",
        momentum: float = 0.05,
        eps: float = 1e-5,
        bn_scale_init: float = 0.1,
        fused: bool = True,
        kernels: str = "auto",
    ) -> None:
        super().__init__()
        if stats not in STATS:
            raise ValueError(f"stats={stats!r}: choose one of {STATS}")
        if kernels not in KERNELS:
            raise ValueError(f"kernels={kernels!r}: choose one of {KERNELS}")
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps}: must be >= 1")
        d, h = (2 if bidirectional else 1), hidden_size
        self.input_size, self.hidden_size, self.num_directions = input_size, h, d
        self.momentum, self.eps, self.fused, self.stats = momentum, eps, fused, stats
        self.kernels = kernels
        self.weight_ih = nn.Parameter(torch.empty(d, input_size, 4 * h))
        self.weight_hh = nn.Parameter(torch.empty(d, h, 4 * h))
        self.bn_ih_weight = nn.Parameter(torch.full((d, 4 * h), bn_scale_init))
        self.bn_hh_weight = nn.Parameter(torch.full((d, 4 * h), bn_scale_init))
        self.bn_hh_bias = nn.Parameter(torch.zeros(d, 4 * h))
        self.bn_c_weight = nn.Parameter(torch.full((d, h), bn_scale_init))
        self.bn_c_bias = nn.Parameter(torch.zeros(d, h))
        slots = max_steps if stats == "per_step" else 1
        for name, size in (("ih", 4 * h), ("hh", 4 * h), ("c", h)):
            self.register_buffer(f"running_mean_{name}", torch.zeros(slots, d, size))
            self.register_buffer(f"running_var_{name}", torch.ones(slots, d, size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for k in range(self.num_directions):
            nn.init.orthogonal_(self.weight_ih.data[k])
            nn.init.orthogonal_(self.weight_hh.data[k])
        with torch.no_grad():  # forget-gate offset 1 (gate order i, f, o, g)
            self.bn_hh_bias.zero_()
            self.bn_hh_bias[:, self.hidden_size : 2 * self.hidden_size] = 1.0

    def _update_running(self, stats: list[torch.Tensor]) -> None:
        """Move each slot towards the batch statistics of its step(s), decay ``1 - momentum``."""
        t_len = stats[0].shape[0]
        slots = self.running_mean_ih.shape[0]
        names = [f"running_{s}_{n}" for n in ("ih", "hh", "c") for s in ("mean", "var")]
        for name, per_step in zip(names, stats):
            buf = getattr(self, name)
            per_step = per_step[:, :, 0]  # (T, D, size)
            if self.stats == "time_averaged":
                target = per_step.mean(0, keepdim=True)
                buf.lerp_(target, self.momentum)
                continue
            n = min(t_len, slots)
            target = per_step[:n].clone()
            if t_len > slots:  # steps past the last slot share it (their average)
                target[-1] = per_step[slots - 1 :].mean(0)
            buf[:n].lerp_(target, self.momentum)

    def _cpp(self, x: torch.Tensor):  # noqa: ANN202
        """The C++ step kernels where they apply (float32/64 CPU, ``kernels="auto"``), else None."""
        if self.kernels == "eager" or x.dtype not in _CPP_DTYPES or x.device.type != "cpu":
            return None
        return cpp_kernels()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The recurrence and its batch statistics run in float32 even under bf16 autocast: the
        # fused backward mixes its saved tensors with the weights' grads, and per-step variances
        # of bf16 pre-activations lose most of their digits. (The parameters' dtype: float32,
        # or float64 where the tests check the maths.)
        x = x.to(self.weight_ih.dtype)
        xt = x.transpose(0, 1)  # (T, B, I)
        xs = torch.stack([xt, xt.flip(0)]) if self.num_directions == 2 else xt[None]
        running = tuple(
            getattr(self, f"running_{s}_{n}")[:, :, None]
            for n in ("ih", "hh", "c")
            for s in ("mean", "var")
        )
        args = (
            xs.contiguous(), self.weight_ih, self.bn_ih_weight[:, None], self.bn_hh_bias[:, None],
            self.weight_hh, self.bn_hh_weight[:, None], self.bn_c_weight[:, None],
            self.bn_c_bias[:, None], running, self.training, self.eps, self._cpp(x),
        )  # fmt: skip
        with torch.autocast(x.device.type, enabled=False):
            if self.fused:
                out, *stats = _BNLSTMFunction.apply(*args)
            else:
                out, *stats = bn_lstm_reference(*args[:-1])
        if self.training:
            with torch.no_grad():
                self._update_running(stats)
        if self.num_directions == 2:
            out = torch.cat([out[:, 0], out[:, 1].flip(0)], dim=-1)
        else:
            out = out[:, 0]
        return out.transpose(0, 1)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, "
            f"bidirectional={self.num_directions == 2}, stats={self.stats}, "
            f"slots={self.running_mean_ih.shape[0]}, eps={self.eps}, fused={self.fused}, "
            f"kernels={self.kernels}"
        )
