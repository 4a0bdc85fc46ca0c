"""The GMM layer's C++ element-wise stages: same results as the eager stages and the broadcast
reference, on shapes that hit the vector loops and their scalar tails; and the fallback."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models.deep_gmm import (
    GMMLayer,
    cpu_kernels,
    gmm_function,
    gmm_nll,
    gmm_stages,
    naive_gmm_nll,
)


def _params(b, s, g, d, seed=0, lv_scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=gen, requires_grad=True)
    mu = torch.randn(s * g, d, generator=gen, requires_grad=True)
    lv = (lv_scale * torch.randn(s * g, d, generator=gen)).requires_grad_()
    w = torch.randn(s, g, generator=gen, requires_grad=True)
    return x, mu, lv, w


@pytest.fixture(scope="module")
def built():
    """Build (or load) the extension once; CI has a compiler, so failing to build is a failure."""
    assert cpu_kernels.cpp_stages() is not None, cpu_kernels._failure
    return cpu_kernels.cpp_stages()


# (batch, states, g, d, chunk): d 13 and blocks of 3-4 states exercise the scalar tails only;
# d 24 and blocks of 16 states the 8-wide loops (and a ragged last block of 5); 80 states in one
# block split every stage's loop across torch's threads (when it has more than one).
SHAPES = [(5, 11, 3, 13, 4), (9, 37, 2, 24, 16), (4, 6, 5, 40, None), (12, 80, 2, 8, None)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("floor", [None, 0.8])
def test_cpp_matches_eager_and_naive(built, shape, floor):
    b, s, g, d, chunk = shape
    args = _params(b, s, g, d, seed=sum(shape[:4]))
    grad_out = torch.randn(b, s)
    runs = {
        name: gmm_nll(*args, var_floor=floor, chunk_states=chunk, kernels=name)
        for name in ("cpp", "eager")
    }
    ref = naive_gmm_nll(*args, var_floor=floor)
    grads_ref = torch.autograd.grad((ref * grad_out).sum(), args)
    for out in runs.values():
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
        grads = torch.autograd.grad((out * grad_out).sum(), args)
        for u, v in zip(grads, grads_ref):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_cpp_floored_variances_get_no_gradient(built):
    x, mu, lv, w = _params(3, 9, 2, 16, seed=1)
    with torch.no_grad():
        lv[:6] = -3.0  # states 0-2: every variance far below the floor
    out = gmm_nll(x, mu, lv, w, var_floor=0.5, chunk_states=4, kernels="cpp")
    torch.testing.assert_close(out, naive_gmm_nll(x, mu, lv, w, var_floor=0.5))
    (g_lv,) = torch.autograd.grad(out.sum(), lv)
    assert g_lv[:6].abs().max() == 0 and g_lv[6:].abs().max() > 0


def test_cpp_with_frozen_variances_and_input(built):
    """The staged regime freezes the variances; a shallow GMM's input needs no gradient."""
    x, mu, lv, w = _params(6, 10, 3, 24, seed=2)
    x, lv = x.detach(), lv.detach()
    out = gmm_nll(x, mu, lv, w, var_floor=0.8, chunk_states=8, kernels="cpp")
    ref = naive_gmm_nll(x, mu, lv, w, var_floor=0.8)
    for u, v in zip(
        torch.autograd.grad(out.sum(), (mu, w)), torch.autograd.grad(ref.sum(), (mu, w))
    ):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_cpp_with_frozen_means_and_variances(built):
    """A frozen GMM under trained features: the backward recomputes the weights for the input's
    gradient alone (no parameter gradients to fuse that pass with)."""
    x, mu, lv, w = _params(6, 10, 3, 24, seed=3)
    mu, lv = mu.detach(), lv.detach()
    out = gmm_nll(x, mu, lv, w, var_floor=0.8, chunk_states=4, kernels="cpp")
    ref = naive_gmm_nll(x, mu, lv, w, var_floor=0.8)
    for u, v in zip(torch.autograd.grad(out.sum(), (x, w)), torch.autograd.grad(ref.sum(), (x, w))):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_auto_picks_cpp_only_for_paper_size_float32_cpu_layers(built):
    small = _params(2, 3, 2, 4)
    assert gmm_stages.pick_stages("auto", small[0], small[1], small[2]).name == "eager"
    mu = torch.zeros(gmm_stages.CPP_MIN_ELEMENTS // 8, 8)
    assert gmm_stages.pick_stages("auto", small[0], mu, mu).name == "cpp"
    assert gmm_stages.pick_stages("auto", small[0], mu.double(), mu.double()).name == "eager"
    with pytest.raises(ValueError, match="float32"):
        gmm_stages.pick_stages("cpp", small[0], mu.double(), mu.double())
    with pytest.raises(ValueError, match="kernels"):
        GMMLayer(8, 3, dim=4, kernels="fused")


def test_failed_build_warns_once_and_falls_back_to_eager(monkeypatch, caplog):
    def no_compiler():
        raise RuntimeError("Ninja is required to load C++ extensions\nno compiler")

    monkeypatch.setattr(cpu_kernels, "load_extension", no_compiler)
    monkeypatch.setattr(cpu_kernels, "_stages", None)
    monkeypatch.setattr(cpu_kernels, "_failure", None)
    args = _params(3, 4, 2, 8)
    with caplog.at_level(logging.WARNING, logger=cpu_kernels.__name__):
        out = gmm_nll(*args, kernels="cpp")
        gmm_nll(*args, kernels="cpp")
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler" in warnings[0].getMessage()
    torch.testing.assert_close(out, gmm_nll(*args, kernels="eager"))


def test_kernels_refuse_tensors_they_would_misread(built):
    ext = cpu_kernels.load_extension()
    scale, r_sum = torch.zeros(2, 4), torch.zeros(3, 4)
    with pytest.raises(RuntimeError, match="float32"):
        ext.responsibilities(torch.zeros(2, 3, 4, dtype=torch.float64), scale, r_sum, 0)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.responsibilities(torch.zeros(2, 4, 3).transpose(1, 2), scale, r_sum, 0)


class _MatmulInputs(TorchDispatchMode):
    """Counts the subnormal values among the inputs of every matrix product, and syncs."""

    PRODUCTS = {"mm", "addmm", "bmm", "baddbmm"}

    def __init__(self):
        super().__init__()
        self.subnormal = self.values = self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "_local_scalar_dense":
            self.syncs += 1
        if name in self.PRODUCTS:
            for t in args:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    a = t.abs()
                    self.subnormal += int(((a > 0) & (a < torch.finfo(t.dtype).tiny)).sum())
                    self.values += t.numel()
        return func(*args, **(kwargs or {}))


def _paper_like(batch=32, states=48, g=5, d=272, seed=0):
    """The paper's init (mu ~ N(0, 1), unit variances, uniform weights) at d = 272: log-densities
    of one state's components lie hundreds of nats apart, so responsibilities underflow."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=gen, requires_grad=True)
    mu = torch.randn(states * g, d, generator=gen, requires_grad=True)
    lv = torch.zeros(states * g, d, requires_grad=True)
    w = torch.full((states, g), 1.0 / g, requires_grad=True)
    return x, mu, lv, w


@pytest.mark.parametrize("kernels", ["eager", "cpp"])
def test_no_subnormal_responsibility_reaches_a_matrix_product(kernels, request):
    if kernels == "cpp":
        request.getfixturevalue("built")
    args = _paper_like()
    x, mu, lv, w = args
    y = torch.arange(x.shape[0]) % w.shape[0]
    # The responsibilities pi * dCE/dL in float32 without a flush: some are subnormal.
    with torch.no_grad():
        log_joint = -naive_gmm_nll(x, mu, lv, w)
        grad = (torch.softmax(log_joint, -1) - torch.nn.functional.one_hot(y, w.shape[0])) / len(y)
        comps = mu.view(w.shape[0], w.shape[1], -1)
        diff = x[:, None, None] - comps
        log_wn = torch.log_softmax(w, -1) - 0.5 * (diff * diff).sum(-1)  # constants cancel in pi
        r = torch.softmax(log_wn, -1) * grad[..., None]
        tiny = torch.finfo(torch.float32).tiny
        assert ((r != 0) & (r.abs() < tiny)).sum() > 0  # the case the flush is for
    out = gmm_nll(*args, var_floor=1e-3, kernels=kernels, chunk_states=16)
    loss = torch.nn.functional.cross_entropy(-out, y)
    with _MatmulInputs() as seen:
        grads = torch.autograd.grad(loss, args)
    assert seen.values > 0 and seen.subnormal == 0
    # Flushing values below 1e-38 changes no gradient measurably (float64 reference).
    a64 = [t.detach().double().requires_grad_() for t in args]
    ref = torch.autograd.grad(
        torch.nn.functional.cross_entropy(-naive_gmm_nll(*a64, var_floor=1e-3), y), a64
    )
    for u, v in zip(grads, ref):
        assert (u.double() - v).norm() / v.norm() < 1e-4


@pytest.mark.parametrize("kernels", ["eager", "cpp"])
@pytest.mark.parametrize("offset", [20.0, 50.0])
def test_exact_far_from_zero_with_small_variances(kernels, offset, request):
    """Features at an offset of 20 or 50 with variances of 1e-3: the expanded form about 0 was
    14 / 90 nats off (gradients 30-80 %); about the batch mean it matches float64 direct
    evaluation to < 1e-3 nats, gradients to 1e-4."""
    if kernels == "cpp":
        request.getfixturevalue("built")
    b, s, g, d, var = 12, 4, 3, 272, 1e-3
    gen = torch.Generator().manual_seed(int(offset))
    mu = offset + 0.05 * torch.randn(s * g, d, generator=gen)
    lv = math.log(var) + 0.1 * torch.randn(s * g, d, generator=gen)
    w = torch.randn(s, g, generator=gen)
    k = torch.randint(0, s * g, (b,), generator=gen)
    x = mu[k] + math.sqrt(var) * torch.randn(b, d, generator=gen)  # each frame near a component
    grad_out = torch.randn(b, s, generator=gen)
    a32 = [t.clone().requires_grad_() for t in (x, mu, lv, w)]
    a64 = [t.double().requires_grad_() for t in (x, mu, lv, w)]
    out = gmm_nll(*a32, var_floor=None, kernels=kernels, chunk_states=3)
    ref = naive_gmm_nll(*a64)  # direct (x - mu)^2 / var in float64
    assert (out.double() - ref).abs().max() < 1e-3
    g32 = torch.autograd.grad((out * grad_out).sum(), a32)
    g64 = torch.autograd.grad((ref * grad_out.double()).sum(), a64)
    for u, v in zip(g32, g64):
        assert ((u.double() - v).norm() / v.norm()) < 1e-4


@pytest.mark.parametrize("floor", [None, 0.8])
def test_sync_free_path_reads_nothing_back(floor):
    """The accelerator path (sync_free, one block) on CPU: same results, no host read-back."""
    args = _params(6, 7, 3, 16, seed=4, lv_scale=1.0)
    grad_out = torch.randn(6, 7)
    with _MatmulInputs() as seen:
        out = gmm_nll(*args, var_floor=floor, kernels="eager", chunk_states=7, sync_free=True)
        grads = torch.autograd.grad((out * grad_out).sum(), args)
    assert seen.syncs == 0
    ref = naive_gmm_nll(*args, var_floor=floor)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    for u, v in zip(grads, torch.autograd.grad((ref * grad_out).sum(), args)):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)
    with _MatmulInputs() as seen:
        gmm_nll(*args, var_floor=0.8, kernels="eager", sync_free=False)
    assert seen.syncs > 0  # the CPU path does read the floor check back (cheap there)


@pytest.mark.parametrize("save", [True, False])
def test_cpp_block_loops_match_the_python_loops_and_naive(built, save, monkeypatch):
    """The C++ drivers run the same block loops as gmm_function's Python ones (same stages), with
    the weights kept for the backward or recomputed there; a ragged last block and a floor."""
    monkeypatch.setattr(gmm_function, "SAVE_WEIGHTS", save)
    args = _params(7, 23, 3, 24, seed=5, lv_scale=1.0)
    grad_out = torch.randn(7, 23)
    python_loops = dataclasses.replace(built, forward_blocks=None, backward_blocks=None)
    results = []
    for stages in (built, python_loops):
        monkeypatch.setattr(gmm_function, "pick_stages", lambda *a, _s=stages: _s)
        out = gmm_nll(*args, var_floor=0.8, chunk_states=5)
        results.append((out, torch.autograd.grad((out * grad_out).sum(), args)))
    (out_c, grads_c), (out_p, grads_p) = results
    torch.testing.assert_close(out_c, out_p, rtol=0, atol=0)
    for u, v in zip(grads_c, grads_p):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-7)
    ref = naive_gmm_nll(*args, var_floor=0.8)
    torch.testing.assert_close(out_c, ref, rtol=1e-5, atol=1e-4)
    for u, v in zip(grads_c, torch.autograd.grad((ref * grad_out).sum(), args)):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)
