"""The recurrent-BN LSTM's C++ step kernels in float32: outputs, gradients and population
statistics as close to the float64 autograd loop as float32 gets, on shapes that hit the vector
loops and their scalar tails; which inputs use them; the fallback when they cannot be built.
(The float64 build is checked against the autograd loop to 1e-9 in test_sleep_tsr_model.py.)"""

from __future__ import annotations

import logging

import pytest
import torch

from models.sleep_tsr import BNLSTM, bn_lstm_kernels


@pytest.fixture(scope="module")
def built():
    """Build (or load) the extension once; CI has a compiler, so failing to build is a failure."""
    kernels = bn_lstm_kernels.cpp_kernels()
    assert kernels is not None, bn_lstm_kernels._failure
    return kernels


def _run(net: BNLSTM, x: torch.Tensor, weight: torch.Tensor, mode: str):
    """Output, [d x, d params...] and buffers after one step; the buffers are restored."""
    net.kernels = "eager" if mode == "eager" else "auto"
    net.fused = mode != "reference"
    start = [b.clone() for b in net.buffers()]
    net.zero_grad()
    x = x.detach().clone().requires_grad_()
    y = net(x)
    (y * weight).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in net.parameters()]
    buffers = [b.clone() for b in net.buffers()]
    with torch.no_grad():
        for b, s in zip(net.buffers(), start):
            b.copy_(s)
    return y.detach(), grads, buffers


def _assert_close(got: torch.Tensor, want: torch.Tensor, tol: float = 2e-4) -> None:
    """Within ``tol`` of the float64 reference, relative to the tensor's largest entry.

    Float32 is not closer than ~1e-4 here: the BNs of small batches amplify rounding, and the
    float32 autograd loop itself misses the float64 one by up to 6e-5 on these shapes. A maths
    error (a missing term, a wrong mean) shows as O(1e-2) or more.
    """
    scale = max(1.0, want.abs().max().item())
    err = (got.double() - want).abs().max().item()
    assert err <= tol * scale, f"max error {err:.2e} > {tol} x {scale:.2f}"


# (batch, steps, input, hidden, slots): hidden 8 (4H = 32) runs the 8-wide loops only, hidden 5
# (4H = 20) their scalar tails too; 7 steps over 4 slots share the last population slot.
SHAPES = [(16, 6, 5, 8, 6), (9, 7, 3, 5, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("stats", ["per_step", "time_averaged"])
def test_cpp_step_matches_autograd_reference(built, shape, bidirectional, training, stats):
    b, t, i, h, slots = shape
    torch.manual_seed(0)
    net = BNLSTM(i, h, bidirectional=bidirectional, max_steps=slots, stats=stats)
    with torch.no_grad():  # non-trivial BN parameters and running statistics
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for buf in net.buffers():
            buf.add_(0.1 * torch.rand_like(buf))
    net.train(training)
    x = torch.randn(b, t, i)
    weight = torch.randn(b, t, h * (2 if bidirectional else 1))
    y, grads, bufs = _run(net, x, weight, "cpp")
    y_e, grads_e, bufs_e = _run(net, x, weight, "eager")  # the torch-op step, for comparison
    # the reference: the plain autograd loop in float64
    y_r, grads_r, bufs_r = _run(net.double(), x.double(), weight.double(), "reference")
    net.float()
    for got, eager, want in zip(
        [y, *grads, *bufs], [y_e, *grads_e, *bufs_e], [y_r, *grads_r, *bufs_r]
    ):
        _assert_close(got, want)
        _assert_close(eager, want)
    if training:  # the population statistics moved
        assert not torch.allclose(bufs[0], net.running_mean_ih)


def test_default_layer_uses_cpp_kernels_on_cpu(built, monkeypatch):
    calls = []
    real = built.forward_step
    monkeypatch.setattr(bn_lstm_kernels, "_extension", _Spy(built, real, calls))
    net = BNLSTM(4, 3, max_steps=5)
    net(torch.randn(2, 5, 4)).sum().backward()
    assert len(calls) == 5  # one call per step, both directions at once
    net.kernels = "eager"
    net(torch.randn(2, 5, 4))
    assert len(calls) == 5
    net.fused = False  # the autograd loop
    net(torch.randn(2, 5, 4))
    assert len(calls) == 5


class _Spy:
    """Stands in for torch.ops.sleep_tsr_bn_lstm and counts forward_step calls."""

    def __init__(self, ops, forward_step, calls: list) -> None:
        self._ops, self._forward_step, self._calls = ops, forward_step, calls

    def forward_step(self, *args):  # noqa: ANN002
        self._calls.append(1)
        return self._forward_step(*args)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._ops, name)


def test_failed_build_warns_once_and_falls_back_to_torch_ops(monkeypatch, caplog):
    def no_compiler():
        raise RuntimeError("Ninja is required to load C++ extensions\nno compiler")

    monkeypatch.setattr(bn_lstm_kernels, "_load", no_compiler)
    monkeypatch.setattr(bn_lstm_kernels, "_extension", None)
    monkeypatch.setattr(bn_lstm_kernels, "_failure", None)
    torch.manual_seed(0)
    net = BNLSTM(4, 3, max_steps=5)
    x = torch.randn(2, 5, 4)
    with caplog.at_level(logging.WARNING, logger=bn_lstm_kernels.__name__):
        out = net(x)
        net(x)
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler" in warnings[0].getMessage()
    net.kernels = "eager"
    torch.testing.assert_close(out, net(x))


def test_kernels_refuse_tensors_they_would_misread(built):
    d, b, h = 1, 3, 2
    with pytest.raises(RuntimeError, match="float32 or float64"):
        built.forward_step(*_forward_args(d, b, h, torch.zeros(d, b, 4 * h).half(), a_gates=True))
    with pytest.raises(RuntimeError, match="like the gates"):
        built.forward_step(*_forward_args(d, b, h, torch.zeros(d, b, 4 * h, dtype=torch.double)))
    with pytest.raises(RuntimeError, match="contiguous"):
        built.forward_step(*_forward_args(d, b, h, torch.zeros(d, 4 * h, b).transpose(1, 2)))
    with pytest.raises(ValueError, match="kernels"):
        BNLSTM(4, 3, kernels="cpp")


def _forward_args(d: int, b: int, h: int, x_gates: torch.Tensor, a_gates: bool = False) -> list:
    """forward_step's arguments, all valid float32 except ``x_gates`` (the x W_ih tile) and,
    with ``a_gates``, the h W_hh tile, which is then a copy of it (its dtype rules)."""
    g = 4 * h
    params = [torch.zeros(d, 1, g) for _ in range(3)] + [torch.zeros(d, 1, h) for _ in range(2)]
    c_prev, act = torch.zeros(d, b, h), torch.zeros(d, b, g)
    outs = [torch.zeros(d, b, h) for _ in range(4)]  # c, c_hat, tanh(BN(c)), h
    moments = [torch.zeros(d, 1, g) for _ in range(4)] + [torch.zeros(d, 1, h) for _ in range(2)]
    rstd = [torch.zeros(d, 1, g), torch.zeros(d, 1, g), torch.zeros(d, 1, h)]
    a_tile = x_gates.clone() if a_gates else torch.zeros(d, b, g)
    return [x_gates, a_tile, *params, c_prev, act, *outs, *moments, *rstd, True, 1e-5]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_row_blocks_on_several_threads_match_autograd_reference(built, bidirectional):
    """With threads to spare the kernels split the batch into row blocks (here 2-3, uneven);
    in float64 the result must still be the autograd loop's to 1e-9."""
    torch.set_num_threads(6 if bidirectional else 3)  # the conftest fixture restores it
    torch.manual_seed(0)
    net = BNLSTM(4, 5, bidirectional=bidirectional, max_steps=4).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(100, 6, 4, dtype=torch.double)
    weight = torch.randn(100, 6, 5 * (2 if bidirectional else 1), dtype=torch.double)
    y, grads, bufs = _run(net, x, weight, "cpp")
    y_r, grads_r, bufs_r = _run(net, x, weight, "reference")
    for got, want in zip([y, *grads, *bufs], [y_r, *grads_r, *bufs_r]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
