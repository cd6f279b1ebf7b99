"""Each student loss against a value computed by hand (numbers worked out in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.models.losses import (
    FeatureProjection,
    LearnableTemperature,
    asymmetric_loss,
    bce_with_tags,
    classification_loss,
    feature_distillation_loss,
    prediction_distillation_loss,
    teacher_soft_targets,
)

LN3 = math.log(3.0)


def test_feature_loss_without_projection():
    # g - f = [0, 2] and [3, 0]: squared norms 4 + 9 = 13; N R = 2 boxes -> 13 / (2 * 2) = 3.25
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    f = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert feature_distillation_loss(g, f).item() == pytest.approx(3.25)
    # the same boxes as one image with R = 2: N = 1, R = 2
    assert feature_distillation_loss(g[None], f[None]).item() == pytest.approx(3.25)


def test_feature_loss_with_projection():
    # P(g) = W g + b with W = [[1, 0], [0, 1], [1, 1]], b = [0, 0, 1]: P([1, 2]) = [1, 2, 4];
    # f = [0, 2, 2]: ||f - P(g)||^2 = 1 + 0 + 4 = 5; one box -> 5 / 2 = 2.5
    projection = FeatureProjection(2, 3)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        projection.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    g = torch.tensor([[1.0, 2.0]], requires_grad=True)
    f = torch.tensor([[0.0, 2.0, 2.0]])
    loss = feature_distillation_loss(g, f, projection)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0


def test_feature_loss_needs_projection_when_widths_differ():
    with pytest.raises(ValueError, match="widths differ"):
        feature_distillation_loss(torch.zeros(3, 4), torch.zeros(3, 5))


def test_feature_loss_teacher_is_constant():
    f = torch.ones(2, 3, requires_grad=True)
    g = torch.zeros(2, 3, requires_grad=True)
    feature_distillation_loss(g, f).backward()
    assert f.grad is None and g.grad is not None


def _teacher_streams():
    # Divided by T = 0.5 the streams become [[0, 0], [ln 3, 0]] and [[ln 3, 0], [0, 0]]:
    # softmax over classes of M^c / T: region 1 [1/2, 1/2], region 2 [3/4, 1/4];
    # softmax over regions of M^d / T: class 1 [3/4, 1/4], class 2 [1/2, 1/2].
    m_c = torch.tensor([[0.0, 0.0], [0.5 * LN3, 0.0]])
    m_d = torch.tensor([[0.5 * LN3, 0.0], [0.0, 0.0]])
    return m_c, m_d


def test_teacher_soft_targets_at_temperature_half():
    m_c, m_d = _teacher_streams()
    # q_1 = 1/2 * 3/4 + 3/4 * 1/4 = 0.5625; q_2 = 1/2 * 1/2 + 1/4 * 1/2 = 0.375
    q = teacher_soft_targets(m_c, m_d)
    assert q.tolist() == pytest.approx([0.5625, 0.375])
    # batched (N, R, K) and ragged lists give the same
    assert teacher_soft_targets(m_c[None], m_d[None])[0].tolist() == pytest.approx([0.5625, 0.375])
    ragged = teacher_soft_targets([m_c, m_c[:1]], [m_d, m_d[:1]])
    assert ragged.shape == (2, 2)
    assert ragged[0].tolist() == pytest.approx([0.5625, 0.375])
    assert ragged[1].tolist() == pytest.approx([0.5, 0.5])  # one region: softmax over regions is 1


def test_prediction_distillation_against_hand_value():
    m_c, m_d = _teacher_streams()
    q = teacher_soft_targets(m_c, m_d)[None]
    z = torch.tensor([[2.0, -1.0]])
    # z / t with t = 5: [0.4, -0.2]; BCE(sigmoid(0.4), 0.5625) and BCE(sigmoid(-0.2), 0.375),
    # averaged: 0.6805770608907722
    inv_t = LearnableTemperature(2)()
    assert inv_t.tolist() == pytest.approx([0.2, 0.2])
    loss = prediction_distillation_loss(z, q, inv_t)
    assert loss.item() == pytest.approx(0.6805770608907722, abs=1e-6)
    # only the pairs no tag decides: the second pair alone, still over N x K = 2 pairs
    only_second = prediction_distillation_loss(z, q, inv_t, torch.tensor([[False, True]]))
    second = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(-0.2), q[0, 1])
    assert only_second.item() == pytest.approx(second.item() / 2, abs=1e-6)
    assert prediction_distillation_loss(z, q, inv_t, torch.zeros(1, 2, dtype=torch.bool)) == 0


def test_bce_with_tags_against_hand_value():
    # sigmoid(0) = 1/2 for a positive: ln 2; z = ln 3 for a negative: -ln(1 - 3/4) = ln 4
    z = torch.tensor([[0.0, LN3]])
    y = torch.tensor([[1.0, 0.0]])
    assert bce_with_tags(z, y).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert classification_loss("bce", z, y).item() == pytest.approx(bce_with_tags(z, y).item())


def test_asymmetric_loss_against_hand_value():
    # positive, z = 0: p = 1/2, gamma_pos = 0 -> -ln(1/2) = 0.693147
    # negative, z = 2: p = 0.880797, shifted p_m = p - 0.05 = 0.830797,
    #   -(p_m ** 4) * ln(1 - p_m) = 0.476413 * 1.776665 = 0.846415; mean of the two = 0.769781
    z = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    assert asymmetric_loss(z, y).item() == pytest.approx(0.7697810656259475, abs=1e-6)
    assert classification_loss("asl", z, y).item() == pytest.approx(0.7697810656259475, abs=1e-6)


def test_asymmetric_loss_reduces_to_bce():
    torch.manual_seed(0)
    z = torch.randn(4, 6)
    y = (torch.rand(4, 6) > 0.5).float()
    asl = asymmetric_loss(z, y, gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    assert asl.item() == pytest.approx(bce_with_tags(z, y).item(), abs=1e-6)


def test_asymmetric_loss_negative_below_clip_costs_nothing():
    # p = sigmoid(-5) < clip: the shifted probability is 0, so an easy negative adds no loss
    assert asymmetric_loss(torch.tensor([[-5.0]]), torch.tensor([[0.0]])).item() == pytest.approx(0.0)


def test_unknown_loss_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="unknown classification loss"):
        classification_loss("focal", torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="do not match"):
        bce_with_tags(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperatures"):
        prediction_distillation_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(2))


def test_temperature_gets_gradients_and_moves():
    temperature = LearnableTemperature(2)
    optimizer = torch.optim.SGD(temperature.parameters(), lr=0.5)
    z = torch.tensor([[4.0, 4.0]])
    # class 1: the teacher is surer than sigmoid(4 / 5) = 0.69 -> 1/t must grow (t shrinks);
    # class 2: the teacher is less sure (0.55) -> 1/t must shrink (t grows)
    q = torch.tensor([[0.99, 0.55]])
    start = temperature.inv_temperature.detach().clone()
    for step in range(20):
        optimizer.zero_grad()
        loss = prediction_distillation_loss(z, q, temperature())
        loss.backward()
        if step == 0:
            grad = temperature.inv_temperature.grad
            assert grad is not None and grad[0] < 0 < grad[1]
        optimizer.step()
    moved = temperature.inv_temperature.detach()
    assert moved[0] > start[0] + 0.05
    assert moved[1] < start[1] - 0.02
    # the optimum of class 2 is sigmoid(4 / t) = 0.55, i.e. 1/t = logit(0.55) / 4 = 0.0502
    assert moved[1].item() == pytest.approx(math.log(0.55 / 0.45) / 4, abs=1e-3)
    assert temperature.temperature[1] > 5.0


def test_feature_loss_with_a_mask_counts_only_the_real_boxes():
    """Padded boxes (mask False) change neither the sum nor the count of boxes."""
    torch.manual_seed(0)
    g, f = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    expected = feature_distillation_loss(g[mask], f[mask])
    assert feature_distillation_loss(g, f, mask=mask).item() == pytest.approx(expected.item())
    nothing = torch.zeros(2, 3, dtype=torch.bool)
    assert feature_distillation_loss(g, f, mask=nothing).item() == 0.0
