"""The weight average (ema_decay): its update against the formula, frozen parameters left alone,
and the config's bounds. Checkpoints and exact resume: tests/test_reliability.py (its runs
average), DDP: tests/test_distributed.py."""

from __future__ import annotations

import math

import pytest
import torch

from fast_nst.core.errors import ConfigError
from fast_nst.training import load_train_config
from fast_nst.training.average import WeightAverage, average_decay


def test_decay_warms_up_then_stays():
    assert average_decay(0.995, 1) == pytest.approx(2 / 11)
    assert average_decay(0.995, 90) == pytest.approx(91 / 100)
    assert average_decay(0.995, 5000) == 0.995


def test_update_follows_the_formula_and_leaves_frozen_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.InstanceNorm2d(4, affine=True))
    net[1].requires_grad_(False)  # frozen: never averaged
    avg = WeightAverage(net, 0.9)
    start = [p.clone() for p in avg.model.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    avg.update(step=100)  # decay min(0.9, 101/110) = 0.9
    conv_w, conv_b, norm_w, norm_b = avg.model.parameters()
    torch.testing.assert_close(conv_w, start[0] + 0.1, rtol=0, atol=1e-6)
    torch.testing.assert_close(conv_b, start[1] + 0.1, rtol=0, atol=1e-6)
    assert torch.equal(norm_w, start[2]) and torch.equal(norm_b, start[3])
    assert not any(p.requires_grad for p in avg.model.parameters())
    avg.update(step=1)  # warm-up: decay 2/11, so 9/11 of the way to the trained weights
    torch.testing.assert_close(avg.model[0].bias, start[1] + 0.1 + (9 / 11) * 0.9, rtol=0, atol=1e-6)


def test_average_starts_as_a_copy_and_keeps_following_weights_loaded_later():
    """A resume builds the average while the network holds the saved average, then loads the
    trained weights into the network in place: the average keeps the first, follows the second."""
    net = torch.nn.Linear(2, 2)
    saved = net.weight.detach().clone()
    avg = WeightAverage(net, 0.5)
    assert avg.model.weight is not net.weight
    with torch.no_grad():
        net.load_state_dict({"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(avg.model.weight, saved)
    avg.update(step=100)  # decay 0.5
    torch.testing.assert_close(avg.model.weight, (saved + 1) / 2)


@pytest.mark.parametrize("value", [1.0, -0.1, math.nan])
def test_config_bounds(value):
    with pytest.raises(ConfigError, match="ema_decay") as e:
        load_train_config(None, ["naming=x", "style_image=s.jpg", f"ema_decay={value}"])
    assert "0.99 averages" in str(e.value)
