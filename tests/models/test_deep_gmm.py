"""GMM layer maths (Eq. 1-5), initialisation, variance floor, prior, and paper-size parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.checks import ConfigError
from models.deep_gmm import (
    DNN,
    DeepGMM,
    GMMLayer,
    OnlineLogPrior,
    SubspaceGMMLayer,
    gmm_nll,
    naive_gmm_nll,
)

B, S, G, D = 5, 4, 3, 6


def _params(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=dtype, requires_grad=True)
    mu = torch.randn(S * G, D, generator=gen, dtype=dtype, requires_grad=True)
    lv = (0.3 * torch.randn(S * G, D, generator=gen, dtype=dtype)).requires_grad_()
    w = torch.randn(S, G, generator=gen, dtype=dtype, requires_grad=True)
    return x, mu, lv, w


@pytest.mark.parametrize("chunk", [None, 1, 3])  # one block, one state per block, ragged blocks
@pytest.mark.parametrize("floor", [None, 0.9])
def test_gradcheck_float64(floor, chunk):
    assert torch.autograd.gradcheck(
        lambda *a: gmm_nll(*a, var_floor=floor, reuse_buffers=False, chunk_states=chunk),
        _params(),
    )


def test_in_place_backward_refuses_a_second_pass():
    x, mu, lv, w = _params()
    out = gmm_nll(x, mu, lv, w).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="reuse_buffers=False"):
        out.backward()


def test_forward_is_minus_log_of_eq1():
    x, mu, lv, w = _params()
    out = gmm_nll(x, mu, lv, w)
    # Eq. 1 with scipy-free explicit densities.
    var = lv.exp().view(S, G, D)
    m = mu.view(S, G, D)
    dens = torch.exp(-0.5 * (((x[:, None, None] - m) ** 2) / var).sum(-1)) / torch.sqrt(
        (2 * math.pi * var).prod(-1)
    )
    p = (torch.softmax(w, -1) * dens).sum(-1)
    torch.testing.assert_close(out, -torch.log(p))


def test_autograd_matches_eq2():
    """Eq. 2 gives d log p(x|s) = -dL; with Sigma' = log variance the variance term carries 1/2."""
    x, mu, lv, w = _params()
    s = 2
    L = gmm_nll(x[:1], mu, lv, w)[0, s]
    g_x, g_mu, g_lv, g_w = torch.autograd.grad(-L, (x, mu, lv, w))
    with torch.no_grad():
        m, var = mu.view(S, G, D)[s], lv.exp().view(S, G, D)[s]
        omega = torch.softmax(w[s], -1)
        log_n = -0.5 * (((x[0] - m) ** 2 / var) + torch.log(2 * math.pi * var)).sum(-1)
        pi = torch.softmax(torch.log(omega) + log_n, -1)  # Eq. 3
        d_mu = pi[:, None] * (x[0] - m) / var
        d_sigma = pi[:, None] * 0.5 * ((x[0] - m) ** 2 / var - 1)
        d_omega = pi - omega
        d_x = -d_mu.sum(0)  # Eq. 2, last line: dx = -sum_i d mu_i
    torch.testing.assert_close(g_mu.view(S, G, D)[s], d_mu)
    torch.testing.assert_close(g_lv.view(S, G, D)[s], d_sigma)
    torch.testing.assert_close(g_w[s], d_omega)
    torch.testing.assert_close(g_x[0], d_x)
    # Only state s receives gradient.
    assert g_mu.view(S, G, D)[torch.arange(S) != s].abs().max() == 0


@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize("floor", [None, 0.8])
def test_fused_matches_naive_broadcast(floor, chunk):
    args = _params(seed=3)
    grad_out = torch.randn(B, S, dtype=torch.float64)
    a = gmm_nll(*args, var_floor=floor, chunk_states=chunk)
    b = naive_gmm_nll(*args, var_floor=floor)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad((a * grad_out).sum(), args)
    gb = torch.autograd.grad((b * grad_out).sum(), args)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


class _LargestTensor(TorchDispatchMode):
    """Records the largest numel any op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("fn, builds_4d", [(gmm_nll, False), (naive_gmm_nll, True)])
def test_no_batch_states_components_dim_tensor(fn, builds_4d):
    b, s, g, d = 7, 11, 3, 13  # B*S*g*d far above every legitimate tensor size
    x = torch.randn(b, d, requires_grad=True)
    mu = torch.randn(s * g, d, requires_grad=True)
    lv = torch.zeros(s * g, d, requires_grad=True)
    w = torch.zeros(s, g, requires_grad=True)
    with _LargestTensor() as mode:
        fn(x, mu, lv, w).sum().backward()
    assert (mode.largest >= b * s * g * d) == builds_4d


def test_paper_initialisation():
    torch.manual_seed(0)
    layer = GMMLayer(32, num_states=200, dim=16, components=5)
    assert abs(layer.mu.mean().item()) < 0.05 and abs(layer.mu.std().item() - 1) < 0.05
    assert torch.all(layer.log_var == 0)  # Sigma' = 0 -> variance 1
    assert torch.allclose(layer.weight_logits, torch.full((200, 5), 0.2))
    assert torch.allclose(torch.softmax(layer.weight_logits, -1), torch.full((200, 5), 0.2))


def test_variance_floor_keeps_collapsed_components_finite():
    layer = GMMLayer(8, num_states=3, dim=4, components=2, var_floor=1e-2)
    with torch.no_grad():
        layer.log_var.fill_(-200.0)  # exp(-200) would overflow the precisions without a floor
    h = torch.randn(6, 8)
    out = layer(h)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(layer.mu.grad).all()
    assert torch.all(layer.log_var.grad == 0)  # clamped entries receive no gradient
    no_floor = GMMLayer(8, num_states=3, dim=4, components=2, var_floor=None)
    with torch.no_grad():
        no_floor.log_var.fill_(-200.0)
    assert not torch.isfinite(no_floor(h)).all()


def test_prior_learns_label_frequencies_and_is_detached():
    torch.manual_seed(0)
    prior = OnlineLogPrior(4)
    freq = torch.tensor([0.5, 0.3, 0.15, 0.05])
    opt = torch.optim.SGD(prior.parameters(), lr=1.0)
    for _ in range(300):
        y = torch.multinomial(freq, 200, replacement=True)
        opt.zero_grad()
        prior.loss(y).backward()
        opt.step()
    assert torch.allclose(prior().exp(), freq, atol=0.04)
    assert not prior().requires_grad


def test_dgmm_posterior_is_eq4_eq5():
    torch.manual_seed(0)
    net = DeepGMM(in_features=12, num_states=5, width=16, depth=2, gmm_dim=4, gmm_components=3)
    with torch.no_grad():
        net.prior.logits.copy_(torch.randn(5))
    x = torch.randn(9, 12)
    log_joint = net(x)
    expected = torch.log_softmax(net.prior.logits, 0) - net.neg_log_likelihood(x)
    torch.testing.assert_close(log_joint, expected)
    post = torch.softmax(log_joint, -1)
    torch.testing.assert_close(post.sum(-1), torch.ones(9))
    torch.nn.functional.cross_entropy(log_joint, torch.arange(9) % 5).backward()
    assert net.prior.logits.grad is None  # CE on the posterior never reaches the prior
    assert net.hidden[0].fc.weight.grad is not None and net.gmm.bottleneck.weight.grad is not None


@pytest.mark.parametrize(
    "sharing, own",
    [("mean", {"log_var", "weight_logits"}), ("mean_weight", {"log_var"}), ("all", set())],
)
def test_subspace_variants_share_the_right_parameters(sharing, own):
    torch.manual_seed(0)
    layer = SubspaceGMMLayer(10, num_states=6, dim=4, components=3, subspace_dim=5, sharing=sharing)
    names = {n for n, _ in layer.named_parameters()}
    assert {"log_var", "weight_logits"} & names == own
    assert "v" in names and "mu_proj.weight" in names and "mu" not in names
    mu, lv, w = layer.gmm_parameters()
    assert mu.shape == (18, 4) and lv.shape == (18, 4) and w.shape == (6, 3)
    # Init is the paper's in parameter space: variance 1 and uniform weights.
    assert torch.all(lv == 0) and torch.allclose(torch.softmax(w, -1), torch.full((6, 3), 1 / 3))
    layer(torch.randn(4, 10)).sum().backward()
    assert layer.v.grad.abs().sum() > 0 and layer.mu_proj.weight.grad.abs().sum() > 0
    assert [p.shape for p in layer.variance_parameters()] == (
        [torch.Size([12, 5])] if sharing == "all" else [torch.Size([6, 3, 4])]
    )


def _count(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize(
    "build, millions",
    [
        (lambda: DNN(1040, 2432, width=2560, depth=8), 55.0),
        (lambda: DeepGMM(1040, 2432, width=2560, depth=7, gmm_dim=272, gmm_components=5), 49.0),
        (lambda: DeepGMM(1040, 2432, depth=0, gmm_dim=272, gmm_components=41), 54.0),
        (lambda: DeepGMM(1040, 2432, width=2560, depth=7, gmm_dim=480, gmm_components=5), 54.0),
        (lambda: DeepGMM(1040, 2432, width=2560, depth=1, gmm_dim=272, gmm_components=5), 10.0),
        (lambda: DeepGMM(1040, 2432, depth=0, gmm_dim=39, gmm_components=21), 4.0),
    ],
    ids=["dnn8", "dgmm7_272x5", "shallow_gmm_272x41", "dgmm7_480x5", "dgmm1", "table2_39x21"],
)
def test_paper_parameter_counts_on_meta(build, millions):
    with torch.device("meta"):
        model = build()
    assert abs(_count(model) - millions) / millions <= 0.03, _count(model)


def test_separate_regime_trains_7_3m_parameters():
    """Table 1: of the ~49 M DGMM parameters only ~7.3 M (bottleneck + GMM) train when frozen."""
    with torch.device("meta"):
        model = DeepGMM(1040, 2432, width=2560, depth=7, gmm_dim=272, gmm_components=5)
    assert abs(_count(model.gmm) - 7.3) / 7.3 <= 0.03


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="sharing"):
        SubspaceGMMLayer(4, 3, sharing="means")
    with pytest.raises(ValueError, match="in_features"):
        GMMLayer(5, 3, dim=4, bottleneck=False)
    with pytest.raises(ValueError, match="mu"):
        gmm_nll(torch.randn(2, 3), torch.randn(6, 4), torch.randn(6, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="chunk_states"):
        gmm_nll(*_params(), chunk_states=0)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"gmm_dim": 0}, "model.gmm_dim"),
        ({"gmm_components": 0}, "model.gmm_components"),
        ({"gmm_dim": 2.5}, "model.gmm_dim"),
        ({"depth": -1}, "model.depth"),
        ({"num_states": 1}, "model.num_states"),
        ({"subspace": "means"}, "model.subspace"),
        ({"subspace": "mean", "subspace_dim": 0}, "model.subspace_dim"),
        ({"gmm_kernels": "fused"}, "model.gmm_kernels"),
        ({"var_floor": -1.0}, "model.var_floor"),
    ],
)
def test_bad_model_config_is_a_config_error_naming_the_key(kwargs, key):
    args = {"in_features": 12, "num_states": 5, "width": 8, "depth": 1, **kwargs}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DeepGMM(**args)


def test_mixed_precision_input_runs_in_the_parameters_precision():
    """Under bf16 autocast the bottleneck output is bf16; the likelihood must stay float32."""
    x, mu, lv, w = (t.detach().float().requires_grad_() for t in _params())
    ref = gmm_nll(x.detach().bfloat16().float(), mu, lv, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gmm_nll(x.bfloat16(), mu, lv, w)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert mu.grad.dtype == torch.float32 and torch.isfinite(mu.grad).all()


def test_variance_floor_is_applied_only_where_a_block_needs_it():
    """Blocks with every variance above the floor skip the clamp; the result must not change."""
    x, mu, lv, w = _params(seed=5)
    with torch.no_grad():
        lv.view(S, G, D)[:2] = lv.view(S, G, D)[:2].abs() + 0.5  # states 0, 1: above the floor
        lv.view(S, G, D)[2:] = -lv.view(S, G, D)[2:].abs() - 0.5  # states 2, 3: all below it
    grad_out = torch.randn(B, S, dtype=torch.float64)
    args = (x, mu, lv, w)
    a = gmm_nll(*args, var_floor=0.9, chunk_states=1)
    b = naive_gmm_nll(*args, var_floor=0.9)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad((a * grad_out).sum(), args)
    gb = torch.autograd.grad((b * grad_out).sum(), args)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)
    assert ga[2].view(S, G, D)[2:].abs().max() == 0  # floored log-variances get no gradient


def test_cpu_blocks_are_sized_to_the_l2_cache(monkeypatch, tmp_path):
    """256 components per block on a 512 KB L2 (AMD EPYC), 1024 on 2 MB (Xeon) or unknown."""
    import torch

    from models.deep_gmm import gmm_function as gf

    def with_l2(text):
        size = tmp_path / "size"
        if text is None:
            size.unlink(missing_ok=True)
        else:
            size.write_text(text + "\n")
        monkeypatch.setattr(gf, "L2_SIZE_FILE", size)
        gf.l2_cache_bytes.cache_clear()

    cpu = torch.device("cpu")
    with_l2("512K")
    # 256 rows are 51 states of 5 components, rounded down to a whole number of 16-wide vectors
    assert gf.l2_block_rows(272) == 256 and gf.default_chunk_states(2432, 5, cpu, 272) == 48
    with_l2("2048K")
    assert gf.l2_block_rows(272) == 1024
    with_l2("1M")
    assert gf.l2_block_rows(272) == 512 and gf.l2_block_rows(8) == 1024  # clamped
    with_l2(None)
    assert gf.l2_block_rows(272) == 1024
    monkeypatch.setattr(gf, "CPU_CHUNK_ROWS", 100)
    assert gf.default_chunk_states(2432, 5, cpu, 272) == 16
    monkeypatch.setattr(gf, "CPU_CHUNK_ROWS", 60)  # fewer states than one vector: kept as they are
    assert gf.default_chunk_states(2432, 5, cpu, 272) == 12
    assert gf.default_chunk_states(10, 5, cpu, 272) == 10
    assert gf.default_chunk_states(2432, 5, torch.device("meta"), 272) == 2432
    gf.l2_cache_bytes.cache_clear()
