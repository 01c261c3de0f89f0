"""RecAdam in PyTorch against the same hand-computed steps as test/unit/train/recadam.test.ts."""
import math

import pytest
import torch

from rmbert_train.recadam import Anneal, RecAdam


def toy():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    h = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    return w, h


def test_lambda_schedules():
    sig = Anneal("sigmoid", 0.01, 1000)
    assert sig.at(1000) == pytest.approx(0.5, abs=1e-15)
    assert sig.at(0) == pytest.approx(4.5397868702434395e-5, abs=1e-15)
    assert sig.at(2000) == pytest.approx(0.9999546021312976, abs=1e-15)
    assert Anneal("sigmoid", 0.005, 250).at(1250) == pytest.approx(0.9933071490757153, abs=1e-15)
    assert Anneal("linear", 0, 1000).at(500) == 0.5
    assert Anneal("linear", 0, 1000).at(3000) == 1
    assert Anneal("constant", 0, 0).at(7) == 1
    assert Anneal("sigmoid", 0.01, 1000, weight=0.8).at(1000) == pytest.approx(0.4, abs=1e-15)


def test_two_updates_match_the_hand_computed_steps():
    w, h = toy()
    opt = RecAdam([("bert.w", w), ("classifier.weight", h)], 1e-3, Anneal("sigmoid", 0.1, 10), gamma=100, epsilon=1e-6)
    assert opt.pretrained_names == ["bert.w"]
    steps = [
        ([0.1, -0.2], [0.3], [0.9997315022183371, -1.999731500875855], 0.49900000333332223, 0.000536996905807996),
        ([0.05, 0.4], [-0.1], [0.999480972034083, -1.9998556964226284], 0.4985997865515499, 0.00066333154328857),
    ]
    for g, gh, theta, head, dist in steps:
        w.grad = torch.tensor(g, dtype=torch.float64)
        h.grad = torch.tensor(gh, dtype=torch.float64)
        opt.step()
        assert w[0].item() == pytest.approx(theta[0], abs=1e-12)
        assert w[1].item() == pytest.approx(theta[1], abs=1e-12)
        assert h[0].item() == pytest.approx(head, abs=1e-12)
        assert opt.distance_l1() == pytest.approx(dist, abs=1e-12)


def test_constant_lambda_without_penalty_is_adam():
    w1, h1 = toy()
    w2, h2 = toy()
    rec = RecAdam([("bert.w", w1), ("classifier.weight", h1)], 0.01, Anneal("constant", 0, 0), gamma=0, epsilon=1e-7)
    adam = torch.optim.Adam([w2, h2], lr=0.01, eps=1e-7)
    target = torch.tensor([0.3, 0.7], dtype=torch.float64)
    for _ in range(50):
        for w, h, step in ((w1, h1, rec.step), (w2, h2, adam.step)):
            w.grad = h.grad = None
            loss = ((w * h - target) ** 2).sum() + (h ** 2).sum()
            loss.backward()
            step()
    assert torch.allclose(w1, w2, atol=1e-10) and torch.allclose(h1, h2, atol=1e-10)
    assert abs(w1[0].item() - 1) > 0.03
    assert rec.distance_l1() == 0


def test_head_is_not_annealed():
    w, h = toy()
    opt = RecAdam([("bert.w", w), ("classifier.weight", h)], 0.01, Anneal("sigmoid", 1, 100), gamma=10)
    w.grad = torch.ones(2, dtype=torch.float64)
    h.grad = torch.ones(1, dtype=torch.float64)
    opt.step()
    assert h[0].item() == pytest.approx(0.5 - 0.01 / (1 + 1e-6), abs=1e-12)
    assert 1 - w[0].item() < 1e-6
    assert w[0].item() == pytest.approx(1 - 0.01 * Anneal("sigmoid", 1, 100).at(1) / (1 + 1e-6), abs=1e-12)
