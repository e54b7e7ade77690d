"""Running a pretraining job: run directory, Lightning Trainer, checkpoints, resume.

Checkpoints are written atomically (temporary file, fsync, rename), so a crash or a
SIGKILL never leaves a half-written ``last.ckpt``. A checkpoint holds everything needed
to continue exactly: model (with queues, momentum encoders and threshold state as
buffers), optimiser, LR scheduler, loop counters, the RNG states and the position inside
the current epoch.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from hexssl.build import build_datamodule, build_method, global_batch
from hexssl.config import ConfigError, RunConfig, dump_config, load_config
from hexssl.methods.base import NonFiniteLossError, SSLMethod
from hexssl.speed import apply_speed_settings, check_device_precision

CKPT_DIR = "checkpoints"
log = logging.getLogger("hexssl")


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to ``<path>.tmp``, fsync, then rename over ``<path>``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        atomic_torch_save(checkpoint, Path(path))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` so that ``path`` is either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Text-file counterpart of :func:`atomic_torch_save`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunCheckpoints(Callback):
    """``last.ckpt`` every N steps and at each epoch end; ``best.ckpt`` by probe accuracy."""

    def __init__(self, run_dir: Path, every_n_steps: int) -> None:
        self.dir, self.every = run_dir / CKPT_DIR, every_n_steps
        self.best = float("-inf")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every and trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.dir / "last.ckpt")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.dir / "last.ckpt")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        acc = trainer.callback_metrics.get("val/online_acc1")
        if trainer.sanity_checking or acc is None or float(acc) <= self.best:
            return
        self.best = float(acc)
        trainer.save_checkpoint(self.dir / "best.ckpt")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]


class ResumeState(Callback):
    """Saves and restores RNG states and the batch position inside the epoch."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict) -> None:
        nb = trainer.num_training_batches
        done = pl_module.global_step * trainer.accumulate_grad_batches - (
            trainer.current_epoch * nb
        )
        checkpoint["hexssl"] = {
            "rng": _rng_state(),
            "batches_done_in_epoch": int(done),
            "epoch": trainer.current_epoch,
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict) -> None:
        state = checkpoint.get("hexssl")
        if state is None:
            return
        _set_rng_state(state["rng"])
        dm = getattr(trainer, "datamodule", None)
        if dm is not None:
            dm.resume_skip = (state["epoch"], state["batches_done_in_epoch"])


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    keys = np.asarray(keys)
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


class Throughput(Callback):
    """Logs images per second of training (shown in the progress bar)."""

    def __init__(self) -> None:
        self.t0: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, *a: Any) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, *a: Any
    ) -> None:
        if self.t0 is not None:
            rate = batch[0].shape[0] / max(time.perf_counter() - self.t0, 1e-9)
            pl_module.log("train/img_per_s", rate, prog_bar=True)


def last_checkpoint(run_dir: Path) -> Path | None:
    """``<run>/checkpoints/last.ckpt`` if it exists."""
    path = run_dir / CKPT_DIR / "last.ckpt"
    return path if path.is_file() else None


def prepare(cfg: RunConfig) -> tuple[SSLMethod, Any]:
    """Seed, build and validate data and method; nothing is written yet."""
    check_device_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup()
    method = build_method(cfg, dm)
    apply_speed_settings(method, cfg.trainer.channels_last, cfg.trainer.compile)
    for split in ("train_set", "val_set"):
        skipped = getattr(getattr(dm, split, None), "num_skipped", 0)
        if skipped:
            log.warning("%s: %d unreadable images were skipped", split, skipped)
    if cfg.eval.purity_every_n_steps and getattr(dm, "val_set", None) is not None:
        method.purity_batch = fixed_batch(dm.val_set, cfg.eval.purity_batch_size, cfg.seed)
    return method, dm


def fixed_batch(
    dataset: Any, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` items drawn once at random (seeded) as (images, labels, superlabels).

    Random, not the first ``n``: evaluation splits are often sorted by class, and a
    slice of them would hold only a few classes (and inflated chance rates).
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=gen)[: min(n, len(dataset))]
    items = [dataset[int(i)] for i in order]
    images = torch.stack([torch.as_tensor(it[0]) for it in items])
    labels = torch.tensor([int(it[1]) for it in items])
    supers = torch.tensor([int(it[2]) for it in items])
    return images, labels, supers


def make_trainer(cfg: RunConfig, run_dir: Path, callbacks: list[Callback]) -> L.Trainer:
    """Lightning Trainer from the config; loggers write into the run directory."""
    t = cfg.trainer
    loggers: list[Any] = [
        CSVLogger(str(run_dir), name="", version="", flush_logs_every_n_steps=t.log_every_n_steps),
        TensorBoardLogger(str(run_dir), name="tb", version=""),
    ]
    if cfg.wandb:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(name=cfg.name, save_dir=str(run_dir)))
    bars: list[Callback] = [TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps))]
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        accumulate_grad_batches=t.accumulate_grad_batches,
        sync_batchnorm=t.sync_batchnorm,
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        logger=loggers,
        callbacks=callbacks + (bars if t.progress_bar else []),
        enable_progress_bar=t.progress_bar,
        enable_checkpointing=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
        num_sanity_val_steps=0,
    )


def resolve_resume(cfg: RunConfig) -> Path | None:
    """The checkpoint to resume from, or None; refuses to overwrite a finished-looking run."""
    run_dir = cfg.run_dir
    last = last_checkpoint(run_dir)
    if cfg.resume in (None, ""):
        if last is not None:
            raise ConfigError(
                f"run directory {run_dir} already holds a checkpoint; use "
                f"`hexssl resume {run_dir}`, `resume=auto`, or a new `name=`"
            )
        return None
    if cfg.resume == "auto":
        return last
    path = Path(cfg.resume)
    if not path.is_file():
        raise ConfigError(f"resume={cfg.resume!r}: no such checkpoint file")
    return path


def pretrain(cfg: RunConfig, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train ``cfg`` (resuming when asked) and return the run summary."""
    ckpt = resolve_resume(cfg)
    method, dm = prepare(cfg)  # config and data errors surface before anything is written
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    callbacks = [
        RunCheckpoints(run_dir, cfg.trainer.checkpoint_every_n_steps),
        ResumeState(),
        Throughput(),
        *(extra_callbacks or []),
    ]
    trainer = make_trainer(cfg, run_dir, callbacks)
    start = time.time()
    try:
        trainer.fit(method, dm, ckpt_path=str(ckpt) if ckpt else None)
    except NonFiniteLossError as err:
        last = last_checkpoint(run_dir)
        hint = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{err}; {hint} (left untouched)") from None
    return finish(cfg, trainer, method, dm, time.time() - start)


def finish(
    cfg: RunConfig, trainer: L.Trainer, method: SSLMethod, dm: Any, seconds: float
) -> dict[str, Any]:
    """Write ``summary.json`` (and the final kNN accuracy when asked) and print one line."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary: dict[str, Any] = {
        "name": cfg.name,
        "label": cfg.label or cfg.name,
        "seed": cfg.seed,
        "method": cfg.method.name,
        "hex": cfg.hex.enabled,
        "variant": cfg.hex.variant,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "global_batch": global_batch(cfg),
        "seconds": round(seconds, 1),
        **metrics,
    }
    if cfg.eval.knn_at_end and trainer.is_global_zero:
        summary.update(final_knn(method, dm, cfg))
    if trainer.is_global_zero:
        atomic_write_text(cfg.run_dir / "summary.json", json.dumps(summary, indent=2))
        print(summary_line(summary))
    return summary


def final_knn(method: SSLMethod, dm: Any, cfg: RunConfig) -> dict[str, float]:
    """Weighted kNN on frozen backbone features, class and superclass level."""
    from hexssl.evaluate import frozen_features, knn_summary

    if getattr(dm, "val_set", None) is None:
        return {}
    with torch.no_grad():
        train, val = frozen_features(method, dm)
    res = knn_summary(train, val, [cfg.eval.knn_k], [cfg.eval.knn_t])
    return {k: v for k, v in res.items() if k.endswith(("_top1", "_top5")) and "_T" not in k}


def summary_line(s: dict[str, Any]) -> str:
    """One line: name, method, HEX, accuracy, final eps and neighbour fraction."""

    def f(key: str, fmt: str = "{:.2f}") -> str:
        return fmt.format(s[key]) if key in s else "n/a"

    return (
        f"[hexssl] {s['name']}: {s['method']} hex={'on:' + s['variant'] if s['hex'] else 'off'} "
        f"epochs={s['epochs']} steps={s['steps']} loss={f('train/loss', '{:.3f}')} "
        f"probe_acc1={f('val/online_acc1')} knn_class={f('knn_class_top1')} "
        f"knn_super={f('knn_super_top1')} eps={f('train/hex/eps', '{:.3f}')} "
        f"neigh_frac={f('train/hex/neighbour_frac', '{:.4f}')} time={s['seconds']}s"
    )


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its ``last.ckpt`` with its saved config."""
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    if last_checkpoint(run) is None:
        raise ConfigError(f"{run} has no checkpoints/last.ckpt to resume from")
    extra = [f"output_dir={run.parent}", f"name={run.name}", "resume=auto"]
    cfg = load_config(run / "config.yaml", [*(overrides or []), *extra])
    return pretrain(cfg)
