"""Shared Lightning machinery for every SSL method, kept small.

A method subclass builds its heads and loss in ``build()`` and implements ``ssl_step``
(augmented views -> loss). The base class covers what all methods share: on-device
augmentation, the online linear probe, the optimiser and the step-based LR schedule,
momentum encoders, pushing training progress (HEX warm-up and schedules) and, for the
superclass oracle only, the batch's labels into the losses by hooks, the optional
weighted HEX term of non-contrastive methods (HEX_SPEC 6), the NaN guard and the HEX
statistics (HEX_SPEC 8). The neighbour-purity diagnostic is a callback in
:mod:`hexssl.eval.purity`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.config import OptimConfig
from hexssl.errors import NonFiniteLossError
from hexssl.losses.infonce import InfoNCE
from hexssl.losses.relatives import RELATIVES
from hexssl.optim import build_optimizer, cosine_momentum, param_groups, warmup_cosine
from hexssl.run.hostsync import avoid_host_sync
from hexssl.run.speed import to_channels_last


@dataclass
class StepOutput:
    """What ``ssl_step`` returns.

    loss: the method's loss; feats: (B, F) backbone features of view 0 (online probe);
    z: two (B, D) projector outputs, used by the weighted HEX term when it is enabled.
    """

    loss: Tensor
    feats: Tensor
    z: tuple[Tensor, Tensor]


class WeightedTerm(nn.Module):
    """``alpha * term(z0, z1)``: HEX added to a method without a denominator (spec 6)."""

    def __init__(self, term: nn.Module, alpha: float) -> None:
        super().__init__()
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"hex.alpha={alpha} must be in (0, 1]")
        self.term, self.alpha = term, alpha


class SSLMethod(L.LightningModule):
    """Base class. Subclasses set ``Params`` (a dataclass of defaults) and ``ssl_step``."""

    Params: ClassVar[Any]
    contrastive: ClassVar[bool] = True
    default_augment: ClassVar[str] = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        params: Any,
        denominator: nn.Module,
        num_classes: int,
        augment: nn.Module,
        eval_augment: nn.Module,
        optim: OptimConfig,
        lr: float,
        extra_term: WeightedTerm | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.backbone, self.params, self.denominator = backbone, params, denominator
        self.augment, self.eval_augment = augment, eval_augment
        self.optim_cfg, self.lr, self.extra_term = optim, lr, extra_term
        self.num_classes = max(num_classes, 1)
        self.seed = seed
        self.channels_last = False  # set by hexssl.run.speed.apply_speed_settings
        self.num_features = int(backbone.num_features)  # type: ignore[arg-type]
        self.classifier = nn.Linear(self.num_features, self.num_classes)  # online probe
        self.momentum_pairs: list[tuple[nn.Module, nn.Module]] = []
        self.logged_this_step = False  # whether the current step's metrics are logged
        self.checkpoint_every = 0  # step-checkpoint period, set by the trainer setup
        self._nonfinite: Tensor | None = None  # NaN/Inf seen since the last check
        self._progress_setters: list[Callable[[float], None]] | None = None
        self._label_setters: list[Callable[[Tensor], None]] | None = None
        self._stat_recorders: list[nn.Module] | None = None
        self.build()

    # ------------------------------------------------------------------ subclass API
    def build(self) -> None:
        """Create heads, losses, queues (buffers) and momentum copies."""
        raise NotImplementedError

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        """Loss of one batch of augmented views."""
        raise NotImplementedError

    def embed(self, x: Tensor) -> Tensor:
        """The projector output of a batch (where the weighted HEX term acts)."""
        projector: nn.Module = self.projector  # type: ignore[assignment]
        out: Tensor = projector(self.backbone(x))
        return out

    def hex_views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(anchors, candidates) of one batch, as HEX compares them in this method's loss.

        Column i of the candidates is image i itself (the anchor or its positive), so the
        diagonal is excluded from N(i). Default: projector outputs on both sides (SimCLR
        and the weighted HEX term of BYOL / Barlow Twins / VICReg). Methods whose loss
        contrasts other tensors (predictions, momentum keys, nearest neighbours) override it.

        Shape:
            x: (N, 3, H, W) eval view -> (N, D), (N, D).
        """
        z = self.embed(x)
        return z, z

    def hex_threshold(self) -> nn.Module | None:
        """The threshold module of this run's HEX term, or None when HEX is off."""
        den = self.extra_term.term.denominator if self.extra_term is not None else self.denominator
        thr: nn.Module | None = getattr(den, "threshold", None)
        return thr

    def make_momentum(self, online: nn.Module) -> nn.Module:
        """A frozen EMA copy of ``online``, updated after each optimiser step."""
        target = copy.deepcopy(online).requires_grad_(False)
        self.momentum_pairs.append((online, target))
        return target

    # ------------------------------------------------------------------ progress
    @property
    def epoch_float(self) -> float:
        """Training progress in fractional epochs, from the optimiser step (resume-exact)."""
        trainer = self._trainer
        if trainer is None or not trainer.num_training_batches:
            return 0.0
        per_epoch = max(trainer.num_training_batches // trainer.accumulate_grad_batches, 1)
        if math.isinf(per_epoch):
            return 0.0
        return self.global_step / per_epoch

    def push_progress(self) -> None:
        """Hand training progress to every loss that depends on it (HEX_SPEC 5.2-5.3)."""
        if self._progress_setters is None:  # collected once, not walked every step
            found = (getattr(m, "set_progress", None) for m in self.modules() if m is not self)
            self._progress_setters = [f for f in found if callable(f)]
        epoch = self.epoch_float
        for setter in self._progress_setters:
            setter(epoch)

    def push_labels(self, superlabels: Tensor) -> None:
        """Hand the batch's superclass labels (B,) to whatever reads them: the oracle.

        Only the superclass-oracle threshold (an analysis bound, HEX_SPEC 6) reads
        labels; they reach it by this hook, as progress does, so ``ssl_step`` and the
        losses carry no labels. With no such module this does nothing.
        """
        if self._label_setters is None:  # collected once, not walked every step
            found = (getattr(m, "set_batch_labels", None) for m in self.modules() if m is not self)
            self._label_setters = [f for f in found if callable(f)]
        for setter in self._label_setters:
            setter(superlabels)

    def push_record_stats(self, on: bool) -> None:
        """Switch the losses' statistics (HEX_SPEC 8) on or off for this step.

        They are read at logging steps only; computing them in between would cost ops
        (kernel launches on a GPU) for values nobody reads. Losses with a
        ``record_stats`` attribute (HEX, the relatives) follow this switch.
        """
        if self._stat_recorders is None:  # collected once, not walked every step
            found = (m for m in self.modules() if m is not self)
            self._stat_recorders = [m for m in found if hasattr(m, "record_stats")]
        for module in self._stat_recorders:
            setattr(module, "record_stats", on)  # noqa: B010 (an attribute, not a submodule)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, labels, superlabels, _ = batch
        log_now = self.logged_this_step = self.logging_step()
        self.push_progress()
        self.push_labels(superlabels)
        self.push_record_stats(log_now)
        views = self.augmented_views(images, self.micro_batch(batch_idx))
        out = self.ssl_step(views)
        loss = self._with_extra_term(out)
        check = log_now or not avoid_host_sync(self.device) or self.epoch_end(batch_idx)
        self._guard_finite(loss, check)
        probe_loss, probe_acc = self._probe(out.feats.detach(), labels)
        if log_now:  # Lightning reads logged values back at these steps only
            self._log_train(loss, out.loss, images.shape[0], probe_acc)
        return loss + probe_loss

    def epoch_end(self, batch_idx: int) -> bool:
        """Whether ``batch_idx`` is the epoch's last batch (an epoch-end checkpoint follows)."""
        trainer = self._trainer
        return trainer is None or batch_idx + 1 >= trainer.num_training_batches

    def logging_step(self) -> bool:
        """Whether this step's metrics reach the loggers (``trainer.log_every_n_steps``).

        Only these steps call ``self.log``: each logged tensor is read back to the host
        (a sync that stalls a GPU), and values logged between them would be dropped.
        The last step of training is always logged, for the run's summary.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        last = self.global_step + 1 >= trainer.estimated_stepping_batches
        return bool(trainer._logger_connector.should_update_logs or last)

    @torch.no_grad()
    def augmented_views(self, images: Tensor, micro: int = 0) -> list[Tensor]:
        """The step's augmented views, always in float32 (outside autocast).

        Mixed precision starts at the backbone: the colour maths of the augmentation
        would otherwise run in bf16/fp16 (or fail on dtype mismatches). ``micro``: the
        micro-batch's index inside its optimiser step (see :meth:`step_generator`).
        """
        gen = self.step_generator(images.device, micro)
        with torch.autocast(images.device.type, enabled=False):
            views: list[Tensor] = self.augment(images, generator=gen)
        return [self.as_input(v) for v in views]

    def as_input(self, x: Tensor) -> Tensor:
        """An image batch in the backbone's memory format (NHWC with channels_last)."""
        return to_channels_last(x) if self.channels_last else x

    def step_generator(self, device: torch.device, micro: int = 0) -> torch.Generator:
        """Augmentation randomness as a pure function of (seed, step, micro-batch, rank).

        ``micro`` is the micro-batch's index inside its optimiser step (gradient
        accumulation): without it every micro-batch of a step would draw the same
        per-sample augmentation. All four are restored on resume, so resume stays exact.
        """
        seed = hash((self.seed, self.global_step, micro, self.global_rank)) % (2**62)
        return torch.Generator(device=device).manual_seed(seed)

    def micro_batch(self, batch_idx: int) -> int:
        """Index of the batch inside its optimiser step (0 without gradient accumulation)."""
        trainer = self._trainer
        return batch_idx % trainer.accumulate_grad_batches if trainer is not None else 0

    def _with_extra_term(self, out: StepOutput) -> Tensor:
        if self.extra_term is None:
            return out.loss
        a = self.extra_term.alpha
        hex_loss = self.extra_term.term(*out.z)
        if self.logging_step():
            self.log("train/hex_term", hex_loss.detach())
        return (1.0 - a) * out.loss + a * hex_loss

    def _guard_finite(self, loss: Tensor, check_now: bool = True) -> None:
        """Stop on a NaN or Inf loss, before the update and before any checkpoint of it.

        Reading the flag is a host sync: on the CPU (free there) it is read every step;
        on accelerators the flag accumulates on the device and is read at logging steps
        and checkpoint steps, so a checkpoint never holds a state after a bad step.
        """
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        every = self.checkpoint_every
        if not (check_now or (every and (self.global_step + 1) % every == 0)):
            return
        seen, self._nonfinite = bool(self._nonfinite), None
        if seen:
            raise NonFiniteLossError(
                f"training loss is {float(loss)} at global step {self.global_step} "
                f"(epoch {self.current_epoch}), or became non-finite at an earlier step "
                f"since the last check; stopping before the update"
            )

    def _probe(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Online linear probe on detached features (no effect on the SSL gradients).

        Returns (loss, top-1 accuracy in percent) over the labelled images (label >= 0),
        computed with masks rather than boolean indexing (no data-dependent shapes).
        """
        known = (labels >= 0).to(feats.dtype)  # (B,)
        n = known.sum().clamp_min(1.0)
        logits = self.classifier(feats)  # (B, C)
        ce = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")  # (B,)
        loss = (ce * known).sum() / n
        acc = ((logits.argmax(1) == labels).to(feats.dtype) * known).sum() / n * 100
        return loss, acc

    def _log_train(self, loss: Tensor, ssl_loss: Tensor, batch_size: int, acc: Tensor) -> None:
        self.log("train/online_acc1", acc, prog_bar=True)
        # sync_dist: under DDP the logged value is the global-batch mean, not rank 0's
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log("train/ssl_loss", ssl_loss.detach(), batch_size=batch_size, sync_dist=True)
        self.log("train/epoch_float", self.epoch_float)
        # HEX's observables under train/hex/; a relative's (floor_share) under its own name
        group = "hex"
        if isinstance(self.denominator, tuple(RELATIVES.values())):
            group = "denominator"
        for key, value in self.hex_stats().items():
            self.log(f"train/{group}/{key}", value, prog_bar=key == "eps")

    def hex_stats(self) -> dict[str, Tensor]:
        """HEX_SPEC 8 observables: the mean over every HEX call since the last read.

        That is every direction, crop pair and term of the logging step (MoCo and
        NNCLR call the loss twice a step, All4One four times, multi-crop 1 + 2 x local
        crops); the losses record statistics at logging steps only
        (:meth:`push_record_stats`).
        """
        sums: dict[str, Tensor] = {}
        calls: Tensor | int = 0  # a tensor once a loss has counted calls
        for module in self.modules():
            if isinstance(module, InfoNCE):
                part, n = module.step_stats()
                for key, value in part.items():
                    sums[key] = sums.get(key, 0.0) + value
                calls += n
        return {key: value / calls for key, value in sums.items()}

    def end_step(self, step: int) -> None:
        """After optimiser step ``step``: momentum encoders and threshold EMAs advance."""
        self._update_momentum(step)
        for module in self.modules():
            if isinstance(module, InfoNCE):
                module.end_step()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the momentum encoders' EMA update.

        The update belongs to the step itself, not to ``on_train_batch_end``: Lightning
        runs the callbacks' batch-end hooks (the step checkpoint) before the module's,
        so a checkpoint written at that step would miss the update and a resumed run
        would diverge (issue 9.1). Only called on optimiser steps (not on accumulation).
        """
        super().optimizer_step(*args, **kwargs)
        self.end_step(self.global_step + 1)  # global_step counts this step just after

    @torch.no_grad()
    def _update_momentum(self, step: int) -> None:
        """EMA of the online weights after ``step`` optimiser steps (copies the buffers)."""
        if not self.momentum_pairs:
            return
        total = int(self.trainer.estimated_stepping_batches)
        tau = cosine_momentum(step, total, self.params.momentum_base)
        for online, target in self.momentum_pairs:  # multi-tensor kernels, no Python loop
            targets: list[Tensor] = list(target.parameters())
            onlines: list[Tensor] = [p.detach() for p in online.parameters()]
            if not targets:
                continue
            torch._foreach_mul_(targets, tau)
            torch._foreach_add_(targets, onlines, alpha=1.0 - tau)
            buffers = list(target.buffers())
            if buffers:  # the foreach ops refuse empty lists
                torch._foreach_copy_(buffers, list(online.buffers()))

    # ------------------------------------------------------------------ validation
    def eval_view(self, images: Tensor) -> Tensor:
        """The deterministic evaluation view (resize + normalise) of a uint8 batch.

        It draws from its own generator, never the global RNG, so that evaluation does
        not change the training randomness (exact resume).
        """
        gen = torch.Generator(device=images.device).manual_seed(0)
        with torch.autocast(images.device.type, enabled=False):
            view: Tensor = self.eval_augment(images, generator=gen)[0]
        return self.as_input(view)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels, _, _ = batch
        known = labels >= 0
        if not bool(known.any()):
            return
        feats = self.backbone(self.eval_view(images[known]))
        logits = self.classifier(feats)  # (b, C)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (b, 5)
        hit = top5 == labels[known][:, None]
        self.log("val/online_acc1", hit[:, 0].float().mean() * 100, prog_bar=True)
        self.log("val/online_acc5", hit.any(1).float().mean() * 100)

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> Any:
        cfg = self.optim_cfg
        ssl = nn.ModuleDict({k: m for k, m in self.named_children() if k != "classifier"})
        groups = param_groups(ssl, cfg.weight_decay, cfg.exclude_bias_norm)
        groups.append(
            dict(
                params=list(self.classifier.parameters()),
                lr=cfg.classifier_lr,
                weight_decay=0.0,
                lars_exclude=True,
            )
        )
        opt = build_optimizer(cfg.name, groups, self.lr, cfg)
        total = int(self.trainer.estimated_stepping_batches)
        max_epochs = max(self.trainer.max_epochs or 1, 1)
        warm = int(total * min(cfg.warmup_epochs / max_epochs, 1.0))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, warm, total, cfg.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
