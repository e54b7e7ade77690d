"""Accuracies are logged in percent, on the training and the validation side alike."""

from __future__ import annotations

from typing import Any

import torch

from .helpers import build, tiny_config


class Fixed(torch.nn.Module):
    """A stand-in backbone that returns fixed features."""

    def __init__(self, feats: torch.Tensor) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feats


def logged(method: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    method.log = lambda key, value, **kw: out.__setitem__(key, float(value))
    return out


def perfect_probe(method: Any, labels: torch.Tensor) -> torch.Tensor:
    """Features whose online probe predicts every label correctly."""
    with torch.no_grad():
        method.classifier.weight.zero_()
        method.classifier.bias.zero_()
        method.classifier.weight[:, : method.num_classes] = torch.eye(method.num_classes)
    return torch.nn.functional.one_hot(labels, method.num_features).float()


def test_train_and_val_online_acc1_are_both_percent() -> None:
    method, dm = build(tiny_config("simclr"))
    labels = torch.arange(method.num_classes).repeat(2)
    out = logged(method)
    _, acc = method._probe(perfect_probe(method, labels), labels)
    assert float(acc) == 100.0
    unknown = torch.cat([labels, torch.full((4,), -1)])  # unlabelled images do not count
    feats = torch.cat([perfect_probe(method, labels), torch.zeros(4, method.num_features)])
    assert float(method._probe(feats, unknown)[1]) == 100.0
    feats = perfect_probe(method, labels)
    method.backbone = Fixed(feats)
    images = next(iter(dm.train_dataloader()))[0][: labels.numel()]
    method.validation_step((images, labels, labels, labels), 0)
    assert out["val/online_acc1"] == 100.0
