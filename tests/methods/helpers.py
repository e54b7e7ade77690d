"""Tiny runs of every method through the config path: ResNet-18 at width 4, 16 px, B = 16."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from torch import Tensor

from hexssl.config import RunConfig, load_config
from hexssl.data.datamodule import HexDataModule
from hexssl.methods import SSLMethod
from hexssl.run.build import build_datamodule, build_method

BATCH = 16
HEAD = {"proj_hidden": 64, "proj_out": 32}
PRED = {**HEAD, "pred_hidden": 64}
QUEUE = {"queue_size": 40}  # not a multiple of the batch: the pointer wraps around
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "simclr": HEAD,
    "moco_v2": {**HEAD, **QUEUE},
    "moco_v3": PRED,
    "nnclr": {**PRED, **QUEUE},
    "all4one": {**PRED, **QUEUE, "attn_layers": 1, "attn_heads": 4},
    "byol": PRED,
    "barlow": HEAD,
    "vicreg": HEAD,
}
HEX_VARIANTS: dict[str, list[str]] = {
    "off": ["hex.enabled=false"],
    "paper": ["hex.enabled=true", "hex.variant=paper"],
    "reference": ["hex.enabled=true", "hex.variant=reference"],
}


def flow(value: Any) -> str:
    """A dict as a YAML flow mapping for a ``key=value`` override."""
    return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"


def tiny_config(method: str, *overrides: str) -> RunConfig:
    """The tiny config of ``method``; later overrides win."""
    return load_config(
        None,
        [
            f"method.name={method}",
            f"method.params={flow(TINY_PARAMS.get(method, {}))}",
            "backbone.name=resnet18",
            "backbone.kwargs={stem: cifar, width: 4}",
            f"data.batch_size={BATCH}",
            "data.image_size=16",
            "data.options={n_super: 2, n_per_super: 2, n_per_class: 8, image_size: 16}",
            "hex.warmup_epochs=0",  # HEX is active from the first step
            "eval.purity_every_n_steps=0",
            "optim.warmup_epochs=0",
            *overrides,
        ],
    )


def build(cfg: RunConfig) -> tuple[SSLMethod, HexDataModule]:
    """Data module (set up) and method of ``cfg``."""
    dm = build_datamodule(cfg)
    dm.setup()
    return build_method(cfg, dm), dm


def first_batch(dm: HexDataModule) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The first training batch (uint8 images, labels, superlabels, index)."""
    images, labels, superlabels, index = next(iter(dm.train_dataloader()))
    return images, labels, superlabels, index


@torch.no_grad()
def update_momentum(method: SSLMethod, tau: float = 0.9) -> None:
    """The base class's EMA update without a Trainer (constant tau)."""
    for online, target in method.momentum_pairs:
        for po, pt in zip(online.parameters(), target.parameters()):
            pt.mul_(tau).add_(po.detach(), alpha=1.0 - tau)
        for bo, bt in zip(online.buffers(), target.buffers()):
            bt.copy_(bo)


def train_steps(
    method: SSLMethod, views: list[Tensor], superlabels: Tensor, steps: int
) -> list[float]:
    """``steps`` Adam steps of the SSL loss on fixed views; the loss before each step."""
    params = [p for n, p in method.named_parameters() if p.requires_grad and "classifier" not in n]
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    method.train()
    method.push_labels(superlabels)  # read by a superclass oracle only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            loss = method.ssl_step(views).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            update_momentum(method)
            losses.append(float(loss))
    return losses


def fast_fit(method: SSLMethod, dm: HexDataModule, precision: str = "32") -> dict[str, Any]:
    """Two training steps under a bare Lightning Trainer on CPU; the logged metrics."""
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(method, dm)
    return dict(trainer.callback_metrics)
