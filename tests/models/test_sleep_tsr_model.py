"""SeqSleepNet: published size, shapes, filterbank shape, fused recurrent BN == autograd loop."""

from __future__ import annotations

import pytest
import torch

from core.checks import ConfigError
from models.sleep_tsr import (
    BNLSTM,
    AttentionPool,
    LearnableFilterbank,
    SeqSleepNet,
    bn_lstm_kernels,
    triangular_filterbank,
)

torch.set_num_threads(1)


def test_parameter_count_matches_reference_design():
    """164,133 = filterbank 129*32 + 2 BN-biLSTMs (per direction 4H(I+H) + 3*4H + 2H) +
    attention (128*64 + 64 + 64) + one shared 128->5 classifier."""
    net = SeqSleepNet()
    parts = {name: sum(p.numel() for p in m.parameters()) for name, m in net.named_children()}
    assert parts["filterbank"] == 129 * 32
    assert parts["epoch_rnn"] == 2 * (256 * (32 + 64) + 3 * 256 + 2 * 64)
    assert parts["seq_rnn"] == 2 * (256 * (128 + 64) + 3 * 256 + 2 * 64)
    assert parts["attention"] == 128 * 64 + 64 + 64
    assert sum(p.numel() for p in net.parameters()) == 164_133


def test_forward_shape_and_l2_excludes_filterbank():
    net = SeqSleepNet().eval()
    out = net(torch.randn(2, 3, 29, 129))
    assert out.shape == (2, 3, 5)
    l2_ids = {id(p) for p in net.l2_parameters()}
    assert id(net.filterbank.weight) not in l2_ids
    assert len(l2_ids) == len(list(net.parameters())) - 1


def test_plain_lstm_variant_runs_and_bad_choices_are_config_errors():
    plain = SeqSleepNet(epoch_rnn="lstm", seq_rnn="lstm")
    assert isinstance(SeqSleepNet().seq_rnn, BNLSTM)
    assert plain(torch.randn(1, 2, 29, 129)).shape == (1, 2, 5)
    for key in ("epoch_rnn", "seq_rnn", "bn_stats", "bn_kernels"):
        with pytest.raises(ConfigError, match=f"model.{key}"):
            SeqSleepNet(**{key: "gru"})


def test_attention_init_is_normal_0_01():
    torch.manual_seed(0)
    att = AttentionPool(128, 64)
    for p in (att.proj.weight, att.proj.bias, att.context):
        assert abs(p.std().item() - 0.1) < 0.03 and abs(p.mean().item()) < 0.03


def _bn_stats_of_step(net: BNLSTM, x: torch.Tensor, t: int) -> torch.Tensor:
    """Batch mean of x_t W_ih (forward direction) at step t, by hand."""
    return (x[:, t] @ net.weight_ih[0]).mean(0)


def test_bn_lstm_keeps_population_statistics_per_time_step():
    torch.manual_seed(0)
    net = BNLSTM(3, 2, bidirectional=False, max_steps=3)
    assert net.running_mean_ih.shape == (3, 1, 8)
    x = torch.randn(16, 5, 3) + torch.arange(5.0)[None, :, None] * 2  # step-dependent mean
    net.train()(x)
    for t in range(2):  # own slot: 0.95 * 0 + 0.05 * batch mean of step t
        assert torch.allclose(net.running_mean_ih[t, 0], 0.05 * _bn_stats_of_step(net, x, t))
    shared = torch.stack([_bn_stats_of_step(net, x, t) for t in (2, 3, 4)]).mean(0)
    assert torch.allclose(net.running_mean_ih[2, 0], 0.05 * shared, atol=1e-6)
    assert not torch.allclose(net.running_mean_ih[0], net.running_mean_ih[1])
    # eval: step t normalises with slot t only
    net.eval()
    y = net(x)
    with torch.no_grad():
        net.running_mean_ih[1] += 1.0
    y2 = net(x)
    assert torch.allclose(y[:, 0], y2[:, 0]) and not torch.allclose(y[:, 1], y2[:, 1])


def test_bn_lstm_time_averaged_option_keeps_one_slot():
    torch.manual_seed(0)
    net = BNLSTM(3, 2, bidirectional=False, stats="time_averaged")
    assert net.running_mean_ih.shape == (1, 1, 8)
    x = torch.randn(16, 4, 3)
    net.train()(x)
    avg = torch.stack([_bn_stats_of_step(net, x, t) for t in range(4)]).mean(0)
    assert torch.allclose(net.running_mean_ih[0, 0], 0.05 * avg, atol=1e-6)


def test_triangular_filterbank_shape():
    bank = triangular_filterbank(32, 256, 100.0)
    assert bank.shape == (129, 32)
    assert (bank >= 0).all() and bank.max() == pytest.approx(1.0)
    assert (bank.sum(0) > 0).all()  # every filter has support
    peaks = bank.argmax(0)
    assert (peaks[1:] > peaks[:-1]).all()  # centres increase with frequency
    assert bank[-1].sum() == 0  # Nyquist bin is outside the last triangle


def test_filterbank_gains_bounded_by_shape():
    fb = LearnableFilterbank()
    w = fb.filters()
    assert (w <= fb.shape + 1e-7).all() and (w >= 0).all()
    assert fb(torch.randn(4, 29, 129)).shape == (4, 29, 32)


def test_attention_weights_sum_to_one():
    att = AttentionPool(8, 4)
    x = torch.randn(3, 7, 8)
    assert torch.allclose(att.weights(x).sum(1), torch.ones(3))
    assert att(x).shape == (3, 8)


@pytest.mark.parametrize("kernels", ["auto", "eager"])  # C++ step (float64 build), torch ops
@pytest.mark.parametrize("stats", ["per_step", "time_averaged"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_fused_bn_lstm_matches_autograd_reference(bidirectional, training, stats, kernels):
    torch.manual_seed(0)
    net = BNLSTM(5, 3, bidirectional=bidirectional, max_steps=3, stats=stats, kernels=kernels)
    net = net.double()
    if kernels == "auto":  # the C++ path must really run (CI has a compiler)
        assert bn_lstm_kernels.cpp_kernels() is not None, bn_lstm_kernels._failure
    with torch.no_grad():  # non-trivial BN parameters and running statistics
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for b in net.buffers():
            b.add_(0.1 * torch.rand_like(b))
    net.train(training)
    x = torch.randn(6, 4, 5, dtype=torch.double, requires_grad=True)
    weight = torch.randn(6, 4, 3 * (2 if bidirectional else 1), dtype=torch.double)
    results = []
    for fused in (True, False):
        net.fused = fused
        start = [b.clone() for b in net.buffers()]
        net.zero_grad()
        x.grad = None
        y = net(x)
        (y * weight).sum().backward()
        grads = [x.grad.clone()] + [p.grad.clone() for p in net.parameters()]
        results.append((y.detach(), grads, [b.clone() for b in net.buffers()]))
        for b, s in zip(net.buffers(), start):
            b.copy_(s)
    (y1, g1, b1), (y2, g2, b2) = results
    assert torch.allclose(y1, y2, atol=1e-10)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-9)
    for a, b in zip(b1, b2):
        assert torch.allclose(a, b, atol=1e-10)
    if training:  # running statistics moved
        assert not torch.allclose(b1[0], net.running_mean_ih)


def test_bn_lstm_direction_semantics():
    """Output step t of the forward half depends only on inputs <= t (and backward on >= t)."""
    torch.manual_seed(0)
    net = BNLSTM(4, 3).eval()
    x = torch.randn(2, 5, 4)
    y = net(x)
    x2 = x.clone()
    x2[:, 3:] += 1.0
    y2 = net(x2)
    assert torch.allclose(y[:, :3, :3], y2[:, :3, :3])  # forward half, steps before the change
    assert not torch.allclose(y[:, :3, 3:], y2[:, :3, 3:])  # backward half sees the future


def test_bn_lstm_trains_under_bf16_autocast():
    """GPU runs use bf16 autocast: the fused recurrent-BN backward must accept it (it runs the
    recurrence in float32) and give the same gradients as without autocast, to bf16 precision."""
    torch.manual_seed(0)
    net = SeqSleepNet()
    x, y = torch.randn(2, 3, 29, 129), torch.randint(0, 5, (2, 3))
    grads = []
    for amp in (False, True):
        net.zero_grad()
        torch.manual_seed(1)  # the same dropout masks in both passes
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten()).backward()
        grads.append(net.seq_rnn.weight_hh.grad.clone())
    assert torch.isfinite(grads[1]).all()
    assert torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), 0) > 0.9
