"""optim.WarmupCosineLR: the linear-warmup + cosine schedule of GPT-style training, against values
computed by hand and against torch 1.13's LambdaLR with the same factor."""
import math

import numpy as np
import pytest

from zkynet import nn, optim

torch = pytest.importorskip("torch")


def by_hand(t, base, warmup, total, min_lr):
    if t < warmup:
        return base * (t + 1) / warmup
    if t >= total:
        return min_lr
    return min_lr + (base - min_lr) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2


def zk_rates(base, warmup, total, min_lr, steps):
    opt = optim.AdamW(nn.Linear(2, 2).parameters(), lr=base)
    schedule = optim.WarmupCosineLR(opt, warmup_steps=warmup, total_steps=total, min_lr=min_lr)
    rates = [opt.lr]
    for _ in range(steps):
        opt.step()
        schedule.step()
        assert schedule.get_last_lr() == opt.lr
        rates.append(opt.lr)
    assert schedule.last_epoch == steps
    return rates


def torch_rates(base, warmup, total, min_lr, steps):
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=base)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: by_hand(t, base, warmup, total, min_lr) / base)
    rates = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        schedule.step()
        rates.append(opt.param_groups[0]["lr"])
    return rates


@pytest.mark.parametrize("base,warmup,total,min_lr", [(0.1, 3, 8, 0.01), (3e-3, 30, 300, 3e-4), (1.0, 0, 4, 0.0),
                                                      (1.0, 5, 5, 0.25)])
def test_rates_match_the_hand_computed_schedule_and_torch_lambdalr(base, warmup, total, min_lr):
    steps = total + 3
    ours = zk_rates(base, warmup, total, min_lr, steps)
    np.testing.assert_allclose(ours, [by_hand(t, base, warmup, total, min_lr) for t in range(steps + 1)],
                               rtol=1e-14, atol=1e-17)
    np.testing.assert_allclose(ours, torch_rates(base, warmup, total, min_lr, steps), rtol=1e-14, atol=1e-17)


def test_warmup_reaches_the_base_rate_and_the_cosine_ends_at_min_lr():
    rates = zk_rates(0.1, 3, 8, 0.01, 10)
    assert rates[:4] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1], rel=1e-15)
    assert rates[8:] == [0.01, 0.01, 0.01]
    assert all(a >= b for a, b in zip(rates[3:], rates[4:]))  # non-increasing after the warmup


def test_lr_at_and_the_construction_rate():
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=2.0)
    schedule = optim.WarmupCosineLR(opt, 4, 10)
    assert opt.lr == 0.5 and schedule.get_last_lr() == 0.5   # base / warmup before the first step
    assert schedule.lr_at(3) == 2.0 and schedule.lr_at(10) == 0.0 and schedule.lr_at(99) == 0.0


@pytest.mark.parametrize("warmup,total,min_lr", [(1, 0, 0.0), (-1, 10, 0.0), (11, 10, 0.0), (1, 10, -1e-3)])
def test_impossible_arguments_are_refused(warmup, total, min_lr):
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    with pytest.raises(Exception, match="WarmupCosineLR"):
        optim.WarmupCosineLR(opt, warmup, total, min_lr)
    assert opt.lr == 1.0
