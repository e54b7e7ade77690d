"""Running a pretraining job: run directory, Lightning Trainer, resume.

Every check (config values, registry names, data, output location, the checkpoint to
resume from, the Lightning Trainer's own settings) runs before the first file is
written, so a bad input leaves nothing behind. Checkpoint files are handled in
:mod:`hexssl.run.checkpoints` and the metrics history in :mod:`hexssl.run.history`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from hexssl.config import ConfigError, RunConfig, dump_config, load_config, to_dict
from hexssl.errors import NonFiniteLossError
from hexssl.eval.purity import PurityCallback, fixed_batch
from hexssl.methods.base import SSLMethod
from hexssl.run.atomic import atomic_write_text, remove_stale_tmp
from hexssl.run.build import build_datamodule, build_method, check_names, global_batch
from hexssl.run.checkpoints import (
    CKPT_DIR,
    AtomicCheckpointIO,
    RunCheckpoints,
    epochs_done,
    read_checkpoint,
    run_checkpoint,
)
from hexssl.run.console import quiet_libraries
from hexssl.run.eval_jobs import frozen_features, knn_summary
from hexssl.run.history import METRICS_FILE, RunCSVLogger, trim_metrics
from hexssl.run.lock import check_unlocked, first_rank_lock, launcher_rank_zero
from hexssl.run.preempt import preemptible
from hexssl.run.speed import (
    apply_backend_settings,
    apply_speed_settings,
    check_device_precision,
    precision_hint,
)

__all__ = ["pretrain", "resume"]
# Config keys a resume may change without --allow-changes: they extend the run or
# change only how it is run and logged, not what it trains up to the checkpoint.
SAFE_CHANGES = frozenset(
    {
        "trainer.max_epochs",
        "trainer.progress_bar",
        "trainer.checkpoint_every_n_steps",
        "trainer.requeue",
        "trainer.log_every_n_steps",
        "data.num_workers",
        "data.pin_memory",
        "trainer.cudnn_benchmark",
        "eval.knn_at_end",
        "wandb",
    }
)
IDENTITY_KEYS = ("name", "output_dir", "resume")  # where a run lives, not what it trains


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


class QuietProgressBar(TQDMProgressBar):
    """The training bar only: no separate bar for each validation pass."""

    def init_validation_tqdm(self) -> Any:
        bar = super().init_validation_tqdm()
        bar.disable = True
        return bar


class Throughput(Callback):
    """Logs images per second of training (shown in the progress bar).

    Measured over the steps between two logging steps (wall time / images), not per
    step: on a GPU a step's host time says nothing about its device time, and a
    synchronisation per step would slow training. The logging step itself reads values
    back from the device, so each interval ends with the device caught up.
    """

    def __init__(self) -> None:
        self.t0: float | None = None
        self.images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, *a: Any
    ) -> None:
        now = time.perf_counter()
        if self.t0 is None:  # the first step (compilation, cudnn autotuning) is not timed
            self.t0 = now
            return
        self.images += batch[0].shape[0]
        if getattr(pl_module, "logged_this_step", True):
            rate = self.images / max(now - self.t0, 1e-9)
            pl_module.log("train/img_per_s", rate, prog_bar=True)
            self.t0, self.images = now, 0


def last_checkpoint(run_dir: Path) -> Path | None:
    """``<run>/checkpoints/last.ckpt`` if it exists."""
    path = run_dir / CKPT_DIR / "last.ckpt"
    return path if path.is_file() else None


def prepare(cfg: RunConfig) -> tuple[SSLMethod, Any]:
    """Seed, build and validate data and method; nothing is written yet."""
    check_names(cfg)
    check_device_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup()
    check_trains_something(cfg, dm)
    method = build_method(cfg, dm)
    t = cfg.trainer
    apply_speed_settings(method, t.channels_last, t.compile, compile_loss=t.compile_loss)
    apply_backend_settings(t.accelerator, t.cudnn_benchmark and not t.deterministic, t.tf32)
    return method, dm


def purity_callbacks(cfg: RunConfig, dm: Any) -> list[Callback]:
    """The neighbour-purity diagnostic on a fixed validation batch, when asked for."""
    every = cfg.eval.purity_every_n_steps
    if not every or getattr(dm, "val_set", None) is None:
        return []
    return [PurityCallback(fixed_batch(dm.val_set, cfg.eval.purity_batch_size, cfg.seed), every)]


def world_size(cfg: RunConfig) -> int:
    """Processes of the run (1 unless ``trainer.devices`` is a count or a list)."""
    d = cfg.trainer.devices
    n = len(d) if isinstance(d, list) else d if isinstance(d, int) and d > 0 else 1
    return n * cfg.trainer.num_nodes


def batches_per_epoch(cfg: RunConfig, n_train: int) -> int:
    """Training batches per epoch and process: shards of the train split, cut into full
    batches (the loader drops the short last one), times ``limit_train_batches``."""
    full = (n_train // world_size(cfg)) // cfg.data.batch_size
    return int(full * cfg.trainer.limit_train_batches)


def check_trains_something(cfg: RunConfig, dm: Any) -> None:
    """Refuse a run whose epochs hold no batch (issue 9.6), saying why."""
    n = len(dm.train_set)
    if batches_per_epoch(cfg, n) > 0:
        return
    b, world, limit = cfg.data.batch_size, world_size(cfg), cfg.trainer.limit_train_batches
    if (n // world) < b:
        why = (
            f"data.batch_size={b} is larger than the train split ({n} images"
            f"{f' over {world} processes' if world > 1 else ''}), and the short last batch "
            "is dropped: lower data.batch_size"
        )
    else:
        why = (
            f"trainer.limit_train_batches={limit} of {(n // world) // b} batches is less "
            "than one batch: raise it"
        )
    raise ConfigError(f"this run would train on nothing: {why}")


def check_output_dir(run_dir: Path) -> None:
    """Refuse a run folder that cannot be created or written, before anything is written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"output_dir: {run_dir} exists and is a file; pick another output_dir=")
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"output_dir: {probe} is a file, not a folder; pick another output_dir=")
    try:  # a real write: permission bits alone do not tell (root, read-only mounts)
        tempfile.TemporaryDirectory(dir=probe, prefix=".hexssl-probe-").cleanup()
    except OSError as err:
        raise ConfigError(
            f"output_dir: cannot write in {probe} ({err.strerror}); pick another "
            "output_dir= or fix its permissions"
        ) from None


def make_trainer(
    cfg: RunConfig,
    run_dir: Path,
    callbacks: list[Callback],
    io: AtomicCheckpointIO | None = None,
    resume_step: int = 0,
) -> L.Trainer:
    """Lightning Trainer from the config; loggers write into the run directory.

    On a resume from step ``resume_step`` both loggers drop what was logged at or after
    that step before the interruption: ``metrics.csv`` its rows, TensorBoard its events
    (``purge_step``: TensorBoard hides them when it reads the earlier event files).

    Lightning's own checks of its settings (e.g. no GPU for ``accelerator=gpu``) raise
    ConfigError here, before the run directory exists.
    """
    t = cfg.trainer
    quiet_libraries()
    tb_kwargs: dict[str, Any] = {"purge_step": resume_step} if resume_step else {}
    loggers: list[Any] = [
        RunCSVLogger(run_dir, flush_logs_every_n_steps=t.log_every_n_steps),
        TensorBoardLogger(str(run_dir), name="tb", version="", **tb_kwargs),
    ]
    if cfg.wandb:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(name=cfg.name, save_dir=str(run_dir)))
    bars: list[Callback] = [QuietProgressBar(refresh_rate=max(1, t.log_every_n_steps))]
    try:
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
            plugins=[io or AtomicCheckpointIO()],
            default_root_dir=str(run_dir),
            num_sanity_val_steps=0,
            deterministic=t.deterministic or None,
        )
    except (MisconfigurationException, ValueError) as err:
        raise ConfigError(f"trainer: {err}") from None


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
    """Train ``cfg`` (resuming when ``cfg.resume`` asks) and return the run summary."""
    check_unlocked(cfg.run_dir)  # before "already holds a checkpoint": name the live writer
    return train(cfg, resolve_resume(cfg), extra_callbacks)


@preemptible  # SIGTERM / SIGUSR1: save at the next step boundary, stop (hexssl.run.preempt)
def train(
    cfg: RunConfig,
    ckpt: Path | None,
    extra_callbacks: list[Callback] | None = None,
    changes: list[str] | None = None,
) -> dict[str, Any]:
    """Check everything, then write the run directory and fit (from ``ckpt`` if given).

    A checkpoint of a finished run (its epochs all done) is a no-op that says so.
    """
    check_output_dir(cfg.run_dir)
    with first_rank_lock(cfg.run_dir):  # one writer per run folder
        return train_locked(cfg, ckpt, extra_callbacks, changes)


def train_locked(
    cfg: RunConfig,
    ckpt: Path | None,
    extra_callbacks: list[Callback] | None = None,
    changes: list[str] | None = None,
) -> dict[str, Any]:
    """:func:`train`'s body, run while this process holds the run folder's lock."""
    run_dir = cfg.run_dir
    state = read_checkpoint(ckpt, run_dir) if ckpt else None  # damaged: fails here
    if state is not None and epochs_done(state) >= cfg.trainer.max_epochs:
        return already_finished(cfg, state)
    method, dm = prepare(cfg)  # config and data errors surface before anything is written
    method.checkpoint_every = cfg.trainer.checkpoint_every_n_steps  # NaN checks before them
    callbacks = [
        RunCheckpoints(run_dir, cfg.trainer.checkpoint_every_n_steps),
        ResumeState(),
        Throughput(),
        *(extra_callbacks or []),
        *purity_callbacks(cfg, dm),  # after the others, as when the method measured it
    ]
    io = AtomicCheckpointIO({str(ckpt): state} if ckpt and state else None)
    step = int(state["global_step"]) if state else 0
    trainer = make_trainer(cfg, run_dir, callbacks, io, resume_step=step)
    write_run_dir(cfg, step, ckpt, changes)
    if launcher_rank_zero():
        print(start_line(cfg, dm, trainer, ckpt, step), flush=True)
        tip = precision_hint(cfg.trainer.precision, cfg.trainer.accelerator)
        if tip:
            print(tip, flush=True)
    start = time.time()
    try:
        trainer.fit(method, dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except NonFiniteLossError as err:
        last = last_checkpoint(run_dir)
        hint = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{err}; {hint} (left untouched)") from None
    return finish(cfg, trainer, method, dm, time.time() - start)


def write_run_dir(cfg: RunConfig, step: int, ckpt: Path | None, changes: list[str] | None) -> None:
    """The first writes of a run: folder, config.yaml, metrics cut back to ``step``."""
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if not launcher_rank_zero():
        return
    remove_stale_tmp(run_dir / CKPT_DIR)  # left by a kill during a save
    trim_metrics(run_dir / METRICS_FILE, step)  # a fresh run (step 0) keeps no rows
    saved = dataclasses.replace(cfg, resume=None)  # where it resumes from is not config
    atomic_write_text(run_dir / "config.yaml", dump_config(saved))
    if ckpt is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        note = f"; changed: {', '.join(changes)}" if changes else ""
        with open(run_dir / "resumes.log", "a", encoding="utf-8") as f:
            f.write(f"{stamp} resumed at step {step} from {ckpt}{note}\n")


def start_line(cfg: RunConfig, dm: Any, trainer: L.Trainer, ckpt: Path | None, step: int) -> str:
    """One line: what is trained, on what data and hardware, and where it writes."""
    h = cfg.hex
    hex_text = f"+HEX({h.variant}, {h.threshold})" if h.enabled else ""
    n_val = len(dm.val_set) if getattr(dm, "val_set", None) is not None else 0
    steps = batches_per_epoch(cfg, len(dm.train_set)) // cfg.trainer.accumulate_grad_batches
    where = f"resuming {ckpt} at step {step}" if ckpt else f"writing {cfg.run_dir}"
    return (
        f"[hexssl] {cfg.name}: {cfg.method.name}{hex_text} {cfg.backbone.name} on "
        f"{cfg.data.dataset} ({len(dm.train_set)} train / {n_val} val images), "
        f"{cfg.trainer.max_epochs} epochs x {max(steps, 1)} steps of {global_batch(cfg)} "
        f"images, {trainer.num_devices} x {trainer.strategy.root_device.type}; {where}"
    )


def already_finished(cfg: RunConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Say that a run is finished and return its summary; nothing is written."""
    done = epochs_done(state)
    print(
        f"[hexssl] {cfg.run_dir} is already finished ({done} epochs, step "
        f"{state['global_step']}); nothing to do. To train longer: hexssl resume "
        f"{cfg.run_dir} trainer.max_epochs={done + max(done // 2, 1)}",
        flush=True,
    )
    path = cfg.run_dir / "summary.json"
    summary: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return summary


def last_purity(trainer: L.Trainer) -> dict[str, float]:
    """The latest purity metrics of the run's :class:`PurityCallback` ({} without one)."""
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
    found = [c.last for c in callbacks if isinstance(c, PurityCallback)]
    return found[0] if found else {}


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
        **last_purity(trainer),  # logged straight to the loggers, not in callback_metrics
    }
    if cfg.eval.knn_at_end and trainer.is_global_zero:
        # Lightning hands the model back on the CPU after fit: evaluate where it trained
        method.to(trainer.strategy.root_device)
        summary.update(final_knn(method, dm, cfg))
    if trainer.is_global_zero:
        atomic_write_text(cfg.run_dir / "summary.json", json.dumps(summary, indent=2))
        print(summary_line(summary))
    return summary


def final_knn(method: SSLMethod, dm: Any, cfg: RunConfig) -> dict[str, float]:
    """Weighted kNN on frozen backbone features, class and superclass level."""
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


def resume(
    run_dir: str | Path,
    overrides: list[str] | None = None,
    allow_changes: bool = False,
    checkpoint: str = "last",
    extra_callbacks: list[Callback] | None = None,
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` exactly, from its ``last.ckpt`` (or ``checkpoint``).

    Overrides that change what is trained (``data.batch_size=32``) are refused unless
    ``allow_changes``; every resume, and what it changed, is logged in ``resumes.log``.
    """
    run = Path(run_dir)
    check_unlocked(run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    if checkpoint == "last" and last_checkpoint(run) is None:
        raise ConfigError(f"{run} has no checkpoints/last.ckpt to resume from")
    place = [f"output_dir={run.parent}", f"name={run.name}"]
    saved = load_config(run / "config.yaml", place)
    cfg = load_config(run / "config.yaml", [*(overrides or []), *place, "resume=null"])
    changes = config_changes(saved, cfg)
    risky = [c for c in changes if c.split(":")[0] not in SAFE_CHANGES]
    if risky and not allow_changes:
        raise ConfigError(
            f"resume would change the run mid-way ({'; '.join(risky)}), so it would no "
            "longer be one run; pass --allow-changes to do it anyway (recorded in "
            "resumes.log), or train a new run with pretrain"
        )
    return train(cfg, run_checkpoint(run, checkpoint), extra_callbacks, changes)


def config_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """``'key: old -> new'`` for every leaf value that differs (identity keys excluded)."""
    a, b = _flatten(to_dict(old)), _flatten(to_dict(new))
    keys = [k for k in sorted(a.keys() | b.keys()) if k.split(".")[0] not in IDENTITY_KEYS]
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
