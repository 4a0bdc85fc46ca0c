"""DeepConvLSTM: published shape, mcfly layer layout, L2 terms, search-space sampling."""

import pytest
import torch

from models.frailty import DeepConvLSTM, McflyDeepConvLSTMSpace, sample_architectures

torch.set_num_threads(1)


def test_published_architecture_layers_and_output():
    net = DeepConvLSTM(in_channels=6, num_classes=3)
    convs = [m for m in net.conv if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [54]
    assert convs[0].kernel_size == (3, 1) and convs[0].padding == (1, 0)
    assert [lstm.hidden_size for lstm in net.lstms] == [29, 95, 94, 46]
    assert net.lstms[0].input_size == 54 * 6  # conv output flattened per step, as mcfly's Reshape
    assert net.head.in_features == 46 and net.head.out_features == 3
    out = net(torch.randn(4, 203, 6))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_mean_readout_differs_from_last_step():
    """'last' reads the final step's logits (mcfly); 'mean' averages the per-step logits."""
    torch.manual_seed(0)
    net = DeepConvLSTM(in_channels=6, conv_filters=[8], lstm_units=[12], readout="last").eval()
    mean_net = DeepConvLSTM(in_channels=6, conv_filters=[8], lstm_units=[12], readout="mean").eval()
    mean_net.load_state_dict(net.state_dict())
    x = torch.randn(2, 50, 6)
    assert not torch.allclose(net(x), mean_net(x))


def test_conv_shares_weights_across_channels():
    """Kernel (3, 1) convolves along time only: permuting the input channels permutes the
    conv features per channel, so a channel-symmetric input gives channel-symmetric features."""
    torch.manual_seed(0)
    net = DeepConvLSTM(in_channels=6, conv_filters=[5, 7], lstm_units=[4]).eval()
    x = torch.randn(1, 30, 1).repeat(1, 1, 6)
    feats = net.conv(net.input_norm(x.transpose(1, 2)).unsqueeze(1).transpose(2, 3))
    assert feats.shape == (1, 7, 30, 6)
    assert torch.allclose(feats[..., 0], feats[..., 3], atol=1e-6)


def test_l2_penalty_covers_conv_and_dense_kernels_only():
    net = DeepConvLSTM(in_channels=6, conv_filters=[4, 5], lstm_units=[6, 7])
    expected = (
        sum(m.weight.pow(2).sum() for m in net.conv if isinstance(m, torch.nn.Conv2d))
        + net.head.weight.pow(2).sum()
    )
    assert torch.allclose(net.l2_penalty(), expected)
    assert len(net.regularized_weights()) == 3


def test_keras_forget_bias_init():
    net = DeepConvLSTM(in_channels=6, conv_filters=[4], lstm_units=[5])
    lstm = net.lstms[0]
    assert torch.all(lstm.bias_ih_l0[5:10] == 1) and torch.all(lstm.bias_ih_l0[:5] == 0)
    assert torch.all(lstm.bias_hh_l0 == 0)


def test_gradient_flows_to_every_parameter():
    net = DeepConvLSTM(in_channels=6, conv_filters=[4, 4], lstm_units=[5, 6])
    loss = torch.nn.functional.cross_entropy(net(torch.randn(3, 20, 6)), torch.tensor([0, 1, 2]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [{"conv_filters": []}, {"lstm_units": [0]}, {"readout": "max"}, {"dropout": 1.0}],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        DeepConvLSTM(in_channels=6, **kwargs)


def test_wrong_input_shape_names_expected_layout():
    with pytest.raises(ValueError, match="channels|6"):
        DeepConvLSTM(in_channels=6)(torch.randn(2, 203, 4))


def test_search_space_samples_within_mcfly_ranges_and_reproducibly():
    space = McflyDeepConvLSTMSpace()
    archs = sample_architectures(50, seed=3)
    assert archs == sample_architectures(50, seed=3)
    assert archs != sample_architectures(50, seed=4)
    for a in archs:
        assert 1 <= len(a["conv_filters"]) <= 10 and 1 <= len(a["lstm_units"]) <= 5
        assert all(10 <= f <= 100 for f in a["conv_filters"])
        assert all(10 <= u <= 100 for u in a["lstm_units"])
        assert 1e-4 <= a["lr"] <= 1e-1 and 1e-4 <= a["l2"] <= 1e-1
    assert len({len(a["conv_filters"]) for a in archs}) > 3  # really varies the depth
    assert space.as_dict()["max_lstm_layers"] == 5
    net = DeepConvLSTM(
        in_channels=6, conv_filters=archs[0]["conv_filters"], lstm_units=archs[0]["lstm_units"]
    )
    assert net(torch.randn(2, 16, 6)).shape == (2, 3)
