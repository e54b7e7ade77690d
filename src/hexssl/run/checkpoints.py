"""The checkpoint files of a run: ``last.ckpt``, the ``previous.ckpt`` it replaced, loading.

Checkpoints are written atomically (temporary file, fsync, rename), so a crash or a
SIGKILL never leaves a half-written ``last.ckpt``; the checkpoint it replaces stays as
``previous.ckpt``, a fallback when ``last.ckpt`` is damaged later (a full disk, a bad
copy). A checkpoint holds everything needed to continue exactly: model (with queues,
momentum encoders and threshold state as buffers), optimiser, LR scheduler, loop
counters, the RNG states and the position inside the current epoch.

There is no ``best.ckpt``: the only labelled held-out split is the validation split,
which for CIFAR and STL-10 is the test set, so picking a checkpoint by its accuracy
would select on the test set (issue 10.6).

Checkpoints are loaded with ``weights_only=True``: a file from someone else cannot run
code when it is loaded. Everything hexssl saves is tensors and plain Python values.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import safetensors
import safetensors.torch
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from hexssl.errors import ConfigError
from hexssl.run.atomic import TMP_SUFFIX, atomic_torch_save

CKPT_DIR = "checkpoints"
NAMES = ("last", "previous")  # checkpoint names a user can pick with --checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic saves; ``weights_only=True`` loads, reusing a checkpoint already read.

    Args:
        preloaded: ``{path: checkpoint}`` read (and checked) before training started,
            so that Lightning does not read the file a second time.
    """

    def __init__(self, preloaded: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.preloaded = dict(preloaded or {})

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        atomic_torch_save(checkpoint, Path(path))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None) -> Any:
        hit = self.preloaded.pop(str(path), None)
        return hit if hit is not None else load_checkpoint(Path(path))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint on the CPU, loaded with ``weights_only=True`` (no code can run).

    Raises:
        ConfigError: the file is damaged, or holds objects other than tensors and plain
            Python values (a pickle that could run code is refused, never executed).
    """
    ckpt = safe_load(path, "checkpoint")
    if not isinstance(ckpt, dict):
        raise ConfigError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a dict")
    return ckpt


def safe_load(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; one ConfigError line otherwise.

    The error says what is wrong with the file (truncated, not a PyTorch file, or refused
    because it holds code) and never suggests ``weights_only=False``, which would run it.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"{what} {path} {load_problem(err)}") from None


def load_problem(err: Exception) -> str:
    """What a failed ``weights_only`` load means, as the end of a sentence about the file."""
    text = str(err)
    code = re.search(r"GLOBAL (\S+)", text)
    if isinstance(err, pickle.UnpicklingError) and code:
        return (
            f"is refused: it holds a Python object ({code.group(1)}) that would run code when "
            "loaded, and hexssl loads only tensors and plain values; use a file written by "
            "hexssl, from a source you trust"
        )
    if isinstance(err, pickle.UnpicklingError | UnicodeDecodeError) or "load key" in text:
        return "is not a PyTorch file (it cannot be unpickled); pass the .pt or .ckpt file itself"
    if isinstance(err, EOFError) or "PytorchStreamReader" in text or "zip archive" in text:
        return "is truncated or damaged (an interrupted download or copy?); fetch it again"
    if isinstance(err, IsADirectoryError):
        return "is a folder, not a file"
    if "weights_only" in text:  # torch's advice would be to turn the protection off
        return "cannot be loaded safely (it holds objects other than tensors and plain values)"
    return f"cannot be loaded safely ({_short(err)})"


def load_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file on the CPU; one ConfigError line otherwise.

    safetensors holds tensors and a JSON header only, so reading it runs no code. The
    header is checked against the file: a truncated file, a header whose shapes or
    offsets do not match the data, or a file of another kind are named as such.
    """
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder, not a file") from None
    try:
        state: dict[str, torch.Tensor] = safetensors.torch.load(data)
    except Exception as err:  # SafetensorError, a bad JSON header, an unknown dtype
        raise ConfigError(f"{what} {path} {safetensors_problem(err)}") from None
    return state


# safetensors' header errors, spaces and underscores removed, lower case (its messages
# read "incomplete metadata, file not fully covered" or "MetadataIncompleteBuffer")
TRUNCATED = ("toosmall", "invalidheaderlength", "notfullycovered", "metadataincompletebuffer")
INCONSISTENT = ("invalidshape", "invalidoffset", "invalidtensorview", "tensorinvalidinfo")


def safetensors_problem(err: Exception) -> str:
    """What a failed safetensors read means, as the end of a sentence about the file."""
    text = str(err).removeprefix("Error while deserializing header: ")
    key = re.sub(r"[\s_]", "", text.lower())  # "header too small" or "HeaderTooSmall"
    if any(w in key for w in TRUNCATED):
        return f"is truncated or damaged ({text}; an interrupted download or copy?); fetch it again"
    if any(w in key for w in INCONSISTENT):
        return (
            f"is damaged: its header does not match its data ({text}); fetch it again or "
            "export it again"
        )
    return (
        f"is not a readable safetensors file ({_short(err)}): another kind of file, or a "
        "damaged one; fetch or export it again"
    )


class RunCheckpoints(Callback):
    """``last.ckpt`` every N optimiser steps and at each epoch end; the replaced one is kept
    as ``previous.ckpt``. ``epochs_done`` (saved with it) tells a finished run."""

    def __init__(self, run_dir: Path, every_n_steps: int) -> None:
        self.dir, self.every = run_dir / CKPT_DIR, every_n_steps
        self.epochs_done = 0
        self.saved_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every and trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs_done = trainer.current_epoch + 1
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt``; the one it replaces becomes ``previous.ckpt`` unless it
        holds the same step (a step checkpoint right before the epoch-end one)."""
        last = self.dir / "last.ckpt"
        if trainer.is_global_zero and self.saved_step != trainer.global_step:
            keep_previous(last, self.dir / "previous.ckpt")
        self.saved_step = trainer.global_step
        for logger in trainer.loggers:  # rows logged so far reach metrics.csv with it
            logger.save()
        trainer.save_checkpoint(last, weights_only=False)  # everything: optimiser, loops, RNG

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_done": self.epochs_done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs_done = int(state_dict.get("epochs_done", 0))


def keep_previous(last: Path, previous: Path) -> None:
    """Make ``previous`` the current ``last``: a hard link (a copy where links are not
    supported), so ``last`` never goes missing in between."""
    if not last.is_file():
        return
    tmp = previous.with_name(previous.name + TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        os.link(last, tmp)
    except OSError:
        shutil.copy2(last, tmp)
    os.replace(tmp, previous)


def epochs_done(ckpt: dict[str, Any]) -> int:
    """Epochs completed when ``ckpt`` was written (0 for checkpoints that lack the count)."""
    state = ckpt.get("callbacks", {}).get(RunCheckpoints.__qualname__, {})
    return int(state.get("epochs_done", 0))


def run_checkpoint(run_dir: Path, which: str = "last") -> Path:
    """``last``/``previous`` (any ``checkpoints/<which>.ckpt``) inside the run, or a file."""
    named = os.sep not in which and not which.endswith(".ckpt")
    path = run_dir / CKPT_DIR / f"{which}.ckpt" if named else Path(which)
    if not path.is_file():
        choices = ", ".join(p.stem for p in intact_checkpoints(run_dir)) or "none"
        raise ConfigError(
            f"checkpoint not found: {path} (checkpoints in {run_dir / CKPT_DIR}: {choices}; "
            "pass --checkpoint NAME|PATH)"
        )
    return path


def intact_checkpoints(run_dir: Path, exclude: Path | None = None) -> dict[Path, int]:
    """``{file: global step}`` of the run's checkpoints that load, newest first."""
    files = sorted((run_dir / CKPT_DIR).glob("*.ckpt"), key=lambda p: -p.stat().st_mtime)
    found = {}
    for path in files:
        try:
            found[path] = int(load_checkpoint(path).get("global_step", -1))
        except ConfigError:
            continue  # damaged: not offered
    found.pop(exclude, None)  # type: ignore[arg-type]
    return found


def read_checkpoint(path: Path, run_dir: Path) -> dict[str, Any]:
    """Load a training checkpoint; a damaged one raises ConfigError naming the file and
    the intact checkpoints to resume from instead."""
    try:
        ckpt = load_checkpoint(path)
        if not {"state_dict", "loops"} <= ckpt.keys():
            raise ConfigError(f"checkpoint {path} is not a training checkpoint (no loops)")
    except ConfigError as err:
        raise ConfigError(f"{err}; {_fallback(run_dir, path)}") from None
    return ckpt


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def _fallback(run_dir: Path, bad: Path) -> str:
    """Where to resume from when ``bad`` cannot be read."""
    intact = intact_checkpoints(run_dir, exclude=bad)
    if not intact:
        return "no intact checkpoint is left: start the run again under a new name="
    picks = [f"--checkpoint {p.stem} (step {step})" for p, step in intact.items()]
    return f"resume from an intact one: hexssl resume {run_dir} " + " or ".join(picks)
