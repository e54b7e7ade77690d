"""Per-step augmentation randomness: distinct per micro-batch, a function of the step."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch

from .helpers import build, tiny_config


def generator_seeds(accumulate: int, batches: int) -> list[tuple[int, int]]:
    """(global_step, augmentation seed) of every training batch of a short run."""
    torch.manual_seed(0)
    method, dm = build(tiny_config("simclr"))
    seen: list[tuple[int, int]] = []
    make = method.step_generator

    def spy(*args: Any, **kwargs: Any) -> torch.Generator:
        gen = make(*args, **kwargs)
        seen.append((method.global_step, gen.initial_seed()))
        return gen

    method.step_generator = spy  # type: ignore[method-assign]
    trainer = L.Trainer(
        max_steps=batches // accumulate,
        accumulate_grad_batches=accumulate,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(method, dm)
    return seen


def test_micro_batches_of_one_step_draw_different_augmentations() -> None:
    seen = generator_seeds(accumulate=2, batches=4)
    assert [step for step, _ in seen] == [0, 0, 1, 1]  # two micro-batches per step
    assert len({seed for _, seed in seen}) == 4


def test_augmentation_is_a_function_of_step_and_micro_batch_only() -> None:
    """Same (step, micro-batch): same draw, the property that makes resume exact."""
    method, dm = build(tiny_config("simclr"))
    images = next(iter(dm.train_dataloader()))[0]
    cpu = torch.device("cpu")
    views = [method.augment(images, generator=method.step_generator(cpu, m))[0] for m in (0, 1, 0)]
    assert torch.equal(views[0], views[2])
    assert not torch.equal(views[0], views[1])


def test_micro_batch_index_follows_the_accumulation_window() -> None:
    method, _ = build(tiny_config("simclr"))
    assert method.micro_batch(5) == 0  # no trainer: no accumulation
    trainer = L.Trainer(accumulate_grad_batches=3, accelerator="cpu", logger=False)
    method.trainer = trainer
    assert [method.micro_batch(i) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
