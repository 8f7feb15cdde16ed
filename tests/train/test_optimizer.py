"""The training optimiser: AdamW with the config's settings, foreach without changing a number."""

from __future__ import annotations

import torch

from smx.config import TrainCfg
from smx.train.schedule import make_optimizer


def _trained(foreach_optimizer: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    train = TrainCfg(lr=1e-2, weight_decay=0.1)
    if foreach_optimizer:
        opt = make_optimizer(model.parameters(), train)
    else:
        opt = torch.optim.AdamW(
            model.parameters(),
            lr=train.lr,
            betas=tuple(train.betas),
            eps=train.eps,
            weight_decay=train.weight_decay,
            foreach=False,
        )
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_optimizer_takes_the_train_section_and_matches_single_tensor_adamw_bitwise() -> None:
    train = TrainCfg(lr=3e-4, weight_decay=0.05, eps=1e-7)
    group = make_optimizer([torch.nn.Parameter(torch.zeros(2))], train).param_groups[0]
    assert (group["lr"], group["weight_decay"], group["eps"]) == (3e-4, 0.05, 1e-7)
    assert group["betas"] == tuple(train.betas) and group["foreach"] is True
    after = _trained(foreach_optimizer=True)
    assert all(torch.equal(a, b) for a, b in zip(after, _trained(False), strict=True))
    torch.manual_seed(0)
    untouched = torch.nn.Linear(6, 5).weight
    assert not torch.equal(after[0], untouched)  # it did train
