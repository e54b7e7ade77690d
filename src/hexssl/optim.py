"""Optimisers (LARS, SGD, AdamW) with bias/norm exclusion, and step-based LR schedules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import Tensor, nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017, arXiv:1708.03888).

    Groups with ``lars_exclude=True`` (biases, norms, the online probe) get plain SGD
    with momentum and no weight decay, as in SimCLR / BYOL.

    Example:
        >>> opt = LARS(param_groups(nn.Linear(4, 2), 1e-4), lr=0.3, eta=0.02)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
    ) -> None:
        if lr <= 0 or eta <= 0:
            raise ValueError(f"LARS needs lr > 0 and eta > 0, got lr={lr}, eta={eta}")
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update_group(params, group)
        return loss

    def _update_group(self, params: list[Tensor], group: dict[str, Any]) -> None:
        """One group's update with multi-tensor (``_foreach``) kernels: a few launches
        per group instead of several per parameter (about 480 a step for a ResNet-18)."""
        grads: list[Tensor] = [cast(Tensor, p.grad) for p in params]
        if not group["lars_exclude"]:
            grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            w_norm = torch.stack(torch._foreach_norm(params))  # (P,)
            g_norm = torch.stack(torch._foreach_norm(grads))  # (P,)
            trust = torch.where(
                (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, 1.0
            )  # (P,) layer-wise trust ratios
            ratios: list[Tensor] = list(trust.unbind())
            grads = list(torch._foreach_mul(grads, ratios))
        bufs: list[Tensor] = [self.state[p].get("momentum_buffer") for p in params]
        if any(b is None for b in bufs):  # first step: the buffers start as the update
            for p, g in zip(params, grads):
                self.state[p]["momentum_buffer"] = g.clone()
        else:
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
        torch._foreach_add_(params, [self.state[p]["momentum_buffer"] for p in params],
                            alpha=-group["lr"])  # fmt: skip


def is_bias_or_norm(name: str, p: Tensor) -> bool:
    """Biases and normalisation weights are 1-D: excluded from decay and LARS."""
    return p.ndim <= 1 or name.endswith(".bias")


def param_groups(
    module: nn.Module, weight_decay: float, exclude_bias_norm: bool = True
) -> list[dict[str, Any]]:
    """Two groups: regular weights, and biases/norms (no decay, no LARS adaptation)."""
    regular: list[nn.Parameter] = []
    excluded: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (excluded if exclude_bias_norm and is_bias_or_norm(name, p) else regular).append(p)
    groups = [dict(params=regular, weight_decay=weight_decay)]
    if excluded:
        groups.append(dict(params=excluded, weight_decay=0.0, lars_exclude=True))
    return groups


def build_optimizer(
    name: str, groups: list[dict[str, Any]], lr: float, cfg: Any
) -> torch.optim.Optimizer:
    """Build by name from ``OPTIMIZERS``; ``cfg`` is an ``OptimConfig``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {sorted(OPTIMIZERS)}")
    if name != "lars":  # only LARS understands the flag
        groups = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    return OPTIMIZERS[name](groups, lr, cfg)


OPTIMIZERS: dict[str, Callable[[list[dict[str, Any]], float, Any], torch.optim.Optimizer]] = {
    "lars": lambda g, lr, c: LARS(g, lr=lr, momentum=c.momentum, eta=c.eta),
    "sgd": lambda g, lr, c: torch.optim.SGD(g, lr=lr, momentum=c.momentum),
    "adamw": lambda g, lr, c: torch.optim.AdamW(g, lr=lr, betas=tuple(c.betas)),
}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up from 0, then cosine decay to ``min_ratio``.

    A pure function of the optimiser step (as in the MoCo v3 / DINO scripts).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """EMA momentum tau rising from ``base`` to ``final`` on a cosine (BYOL, sec. 3.2)."""
    progress = min(step / max(1, total_steps), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
