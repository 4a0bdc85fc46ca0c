"""SeqSleepNet: published size, shapes, filterbank shape, fused recurrent BN == autograd loop."""

from __future__ import annotations

import pytest
import torch

from models.sleep_tsr import (
    BNLSTM,
    AttentionPool,
    LearnableFilterbank,
    SeqSleepNet,
    triangular_filterbank,
)

torch.set_num_threads(1)


def test_parameter_count_matches_paper():
    n = sum(p.numel() for p in SeqSleepNet().parameters())
    assert abs(n - 1.64e5) / 1.64e5 < 0.03, n


def test_forward_shape_and_l2_excludes_filterbank():
    net = SeqSleepNet().eval()
    out = net(torch.randn(2, 3, 29, 129))
    assert out.shape == (2, 3, 5)
    l2_ids = {id(p) for p in net.l2_parameters()}
    assert id(net.filterbank.weight) not in l2_ids
    assert len(l2_ids) == len(list(net.parameters())) - 1


def test_plain_lstm_variant_runs_and_is_close_in_size():
    plain = SeqSleepNet(epoch_rnn="lstm")
    assert plain(torch.randn(1, 2, 29, 129)).shape == (1, 2, 5)
    with pytest.raises(ValueError, match="epoch_rnn"):
        SeqSleepNet(epoch_rnn="gru")


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


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_fused_bn_lstm_matches_autograd_reference(bidirectional, training):
    torch.manual_seed(0)
    net = BNLSTM(5, 3, bidirectional=bidirectional).double()
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
