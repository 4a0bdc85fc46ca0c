"""The GMM layer's C++ element-wise stages: same results as the eager stages and the broadcast
reference, on shapes that hit the vector loops and their scalar tails; and the fallback."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from models.deep_gmm import GMMLayer, cpu_kernels, gmm_nll, gmm_stages, naive_gmm_nll


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


def test_a_lock_left_by_a_killed_build_is_removed_a_fresh_one_kept(tmp_path):
    lock = tmp_path / "lock"
    lock.touch()
    assert not cpu_kernels.clear_stale_lock(tmp_path) and lock.exists()  # a build in progress
    old = lock.stat().st_mtime - 2 * cpu_kernels.STALE_LOCK_S
    os.utime(lock, (old, old))
    assert cpu_kernels.clear_stale_lock(tmp_path) and not lock.exists()
    assert not cpu_kernels.clear_stale_lock(tmp_path)  # nothing left to remove
