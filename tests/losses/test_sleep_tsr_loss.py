"""Eq. 2 on tensors: CE mean, explicit L2, first/second-order smoothness of per-epoch CE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.checks import ConfigError
from losses.sleep_tsr import TemporalSmoothnessLoss, per_epoch_cross_entropy, smoothness_penalty


def _logits_for_probs(
    p_true: list[float], num_classes: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence whose true-class probability at position l is p_true[l]."""
    logits = torch.zeros(1, len(p_true), num_classes)
    for i, p in enumerate(p_true):
        rest = (1 - p) / (num_classes - 1)
        logits[0, i] = torch.log(torch.full((num_classes,), rest))
        logits[0, i, 0] = math.log(p)
    return logits, torch.zeros(1, len(p_true), dtype=torch.long)


def test_per_epoch_ce_is_minus_log_prob():
    logits, y = _logits_for_probs([0.5, 0.25, 0.9])
    ce = per_epoch_cross_entropy(logits, y)
    assert torch.allclose(ce, -torch.log(torch.tensor([[0.5, 0.25, 0.9]])), atol=1e-6)


def test_eq2_by_hand():
    p = [0.5, 0.25, 0.9, 0.9]
    logits, y = _logits_for_probs(p)
    ce = [-math.log(v) for v in p]
    smooth = sum((ce[i] - ce[i + 1]) ** 2 for i in range(3)) / 3
    w = torch.tensor([1.0, -2.0, 3.0])
    out = TemporalSmoothnessLoss(lambda_l2=0.1, gamma=0.5, l2_weighting="literal")(logits, y, [w])
    expected = sum(ce) / 4 + 0.1 * 14.0 + 0.5 * smooth
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["smooth"].item() == pytest.approx(smooth, rel=1e-5)
    assert out["l2"].item() == pytest.approx(14.0)


def test_gamma_zero_is_plain_seqsleepnet_objective():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 20, 5), torch.randint(0, 5, (4, 20))
    out = TemporalSmoothnessLoss(lambda_l2=0.0, gamma=0.0)(logits, y)
    assert torch.allclose(out["loss"], F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1)))


def test_constant_ce_has_no_penalty_and_varying_ce_has_one():
    logits, y = _logits_for_probs([0.3] * 6)
    assert smoothness_penalty(per_epoch_cross_entropy(logits, y)).item() == pytest.approx(
        0, abs=1e-10
    )
    logits, y = _logits_for_probs([0.3, 0.9] * 3)
    assert smoothness_penalty(per_epoch_cross_entropy(logits, y)).item() > 0.5


def test_second_order_term():
    ce = torch.tensor([[1.0, 2.0, 4.0, 7.0]])
    # first differences 1, 2, 3; second differences 1, 1
    assert smoothness_penalty(ce, 1).item() == pytest.approx((1 + 4 + 9) / 3)
    assert smoothness_penalty(ce, 2).item() == pytest.approx(1.0)
    logits, y = torch.randn(2, 5, 5), torch.randint(0, 5, (2, 5))
    base = TemporalSmoothnessLoss(gamma=1.0)(logits, y)
    second = TemporalSmoothnessLoss(gamma=1.0, gamma2=2.0)(logits, y)
    assert second["loss"].item() == pytest.approx(
        base["loss"].item() + 2.0 * second["smooth2"].item(), rel=1e-5
    )


def test_smoothness_gradient_pulls_adjacent_losses_together():
    logits, y = _logits_for_probs([0.2, 0.8])
    logits.requires_grad_(True)
    TemporalSmoothnessLoss(lambda_l2=0.0, gamma=10.0)(logits, y)["loss"].backward()
    plain = logits.detach().clone().requires_grad_(True)
    TemporalSmoothnessLoss(lambda_l2=0.0, gamma=0.0)(plain, y)["loss"].backward()
    # the well-classified epoch (p=0.8) is pushed towards a larger loss by the penalty
    assert logits.grad[0, 1, 0] > plain.grad[0, 1, 0]


def test_reference_weighting_matches_the_authors_formula_by_hand():
    """Reference code: sum_b mean_l CE + lambda * sum_v ||v||^2 / 2 (tf.nn.l2_loss); ours is
    that divided by the batch size B, i.e. mean CE + lambda / (2 B) ||theta||^2."""
    p = [[0.5, 0.25, 0.9], [0.6, 0.7, 0.1]]
    logits = torch.cat([_logits_for_probs(row)[0] for row in p])
    y = torch.zeros(2, 3, dtype=torch.long)
    params = [torch.tensor([1.0, -2.0, 3.0]), torch.tensor([[0.5, 0.5]])]  # ||.||^2 = 14 + 0.5
    lam = 1e-3
    ref = sum(sum(-math.log(v) for v in row) / 3 for row in p) + lam * (14.0 / 2 + 0.5 / 2)
    out = TemporalSmoothnessLoss(lambda_l2=lam, gamma=0.0)(logits, y, params)
    assert out["loss"].item() * 2 == pytest.approx(ref, rel=1e-6)
    literal = TemporalSmoothnessLoss(lambda_l2=lam, l2_weighting="literal")(logits, y, params)
    assert literal["loss"].item() - out["loss"].item() == pytest.approx(
        lam * 14.5 * (1 - 1 / 4), rel=1e-5
    )
    assert TemporalSmoothnessLoss().l2_weight(32) == pytest.approx(1e-3 / 64)


def test_bad_values_raise_config_errors():
    with pytest.raises(ConfigError, match="loss.gamma"):
        TemporalSmoothnessLoss(gamma=-1)
    with pytest.raises(ConfigError, match="loss.l2_weighting"):
        TemporalSmoothnessLoss(l2_weighting="tf")
    with pytest.raises(ValueError, match="expected logits"):
        per_epoch_cross_entropy(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
