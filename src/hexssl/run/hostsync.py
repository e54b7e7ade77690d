"""Host synchronisation: which code paths avoid it, and a counter that finds it.

On a GPU, reading a value back (``.item()``, ``float(t)``, ``if t:``), an op whose output
shape depends on data (``nonzero``, boolean-mask indexing) or a copy from pageable host
memory (a blocking ``.to(device)``, or a host tensor handed to a device op, e.g. a CPU
index into GPU-resident images) makes the host wait for the device queue to drain.
hexssl's training step avoids all of them outside logging steps. Where a CPU-only
shortcut is cheaper (sparse HEX neighbour sets, augmenting only the selected images),
the code asks
:func:`avoid_host_sync` which path to take; :func:`sync_free_paths` forces the
accelerator paths on the CPU, so that a CPU test with :class:`HostSyncCounter` can check
the code a GPU runs.

Example:
    >>> import torch
    >>> with HostSyncCounter() as counter:
    ...     _ = torch.ones(3).sum().item()
    >>> counter.total
    1
    >>> with AtenOpCounter() as ops:
    ...     _ = torch.ones(3).exp().sum()
    >>> ops.total
    3
"""

from __future__ import annotations

import collections
import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_FORCED = False

# Tensor methods and functions that read device values back to the host or need a
# data-dependent output shape: each one is a host sync on CUDA.
SYNC_OPS = frozenset(
    {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero",
     "masked_select", "unique", "unique_consecutive", "bincount", "repeat_interleave",
     "numpy", "new_tensor", "tensor", "as_tensor"}
)  # fmt: skip


def avoid_host_sync(device: torch.device) -> bool:
    """True on accelerators (and on the CPU inside :func:`sync_free_paths`)."""
    return _FORCED or device.type != "cpu"


@contextlib.contextmanager
def sync_free_paths() -> Iterator[None]:
    """Run the accelerator code paths on the CPU (for tests that count syncs)."""
    global _FORCED
    old, _FORCED = _FORCED, True
    try:
        yield
    finally:
        _FORCED = old


def _is_bool_index(args: tuple[Any, ...]) -> bool:
    if len(args) < 2:
        return False
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)


_COPIES = frozenset({"to", "cuda", "copy_"})


def _tensors(args: tuple[Any, ...], kwargs: Any) -> list[torch.Tensor]:
    """The tensor arguments, one level into lists and tuples (indices, ``cat``)."""
    out: list[torch.Tensor] = []
    for a in (*args, *(kwargs or {}).values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def _on_host(t: torch.Tensor) -> bool:
    """A host tensor with data to copy (0-d CPU tensors pass to kernels as values)."""
    return t.device.type == "cpu" and t.dim() > 0


def host_to_device(name: str, args: tuple[Any, ...], kwargs: Any, out: Any) -> bool:
    """Whether the call copies host data to the device and blocks on it.

    An op that mixes host and device tensors copies the host ones (from pageable memory:
    a sync); ``.to(device)`` / ``copy_`` do so unless ``non_blocking=True`` (which is
    asynchronous from pinned memory).
    """
    if name in _COPIES:
        src = args[1] if name == "copy_" and len(args) > 1 else (args[0] if args else None)
        dst = args[0] if name == "copy_" else out
        moved = (
            isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor)
            and _on_host(src) and dst.device.type != "cpu"
        )  # fmt: skip
        if not moved:
            return False
        return not ((kwargs or {}).get("non_blocking") or any(a is True for a in args[1:]))
    tensors = _tensors(args, kwargs)
    return any(_on_host(t) for t in tensors) and any(t.device.type != "cpu" for t in tensors)


class HostSyncCounter(TorchFunctionMode):
    """Counts the calls that synchronise with the device, by op and by caller.

    Value reads and data-dependent shapes (:data:`SYNC_OPS`, boolean-mask indexing) and
    blocking host-to-device copies (:func:`host_to_device`, reported as ``op[host->device]``).
    The caller is the innermost frame outside torch (``file:line``). ``active`` can be
    switched off around parts that should not count (logging steps).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hits: collections.Counter[tuple[str, str]] = collections.Counter()
        self.active = True

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        name = getattr(func, "__name__", str(func))
        if self.active:
            if name == "__getitem__" and _is_bool_index(args):
                name = "__getitem__[bool mask]"
            if name in SYNC_OPS or name == "__getitem__[bool mask]":
                self.hits[(name, _caller())] += 1
        out = func(*args, **(kwargs or {}))
        if self.active and host_to_device(name, args, kwargs, out):
            self.hits[(f"{name}[host->device]", _caller())] += 1
        return out

    @property
    def total(self) -> int:
        """All counted calls."""
        return sum(self.hits.values())

    def report(self) -> str:
        """One line per (op, caller), most frequent first."""
        rows = sorted(self.hits.items(), key=lambda kv: -kv[1])
        return "\n".join(f"{n:5d}  {op:24s} {where}" for (op, where), n in rows)


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and not frame.filename.endswith("hostsync.py"):
            path = frame.filename
            for cut in ("site-packages/", "src/"):
                path = path.split(cut)[-1]
            return f"{path}:{frame.lineno}"
    return "?"


class AtenOpCounter(TorchDispatchMode):
    """Counts the aten ops that run (each one a kernel launch on a GPU), by name.

    Below autograd, so backward ops count too (on the CPU the engine runs them in the
    calling thread). Deterministic for a given program: tests hold op budgets with it.
    ``active`` switches counting off around parts that should not count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.active = True

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if self.active:
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        """All counted ops."""
        return sum(self.ops.values())
