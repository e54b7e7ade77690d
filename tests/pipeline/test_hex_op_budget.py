"""HEX's cost on a GPU, held as a deterministic op budget (issue 33).

On a GPU at the sizes SSL trains at, each aten op is a kernel launch and the loss is
bound by launches, not arithmetic. So the number of aten ops a training step runs,
counted on the CPU on the GPU code paths (:func:`hexssl.run.hostsync.sync_free_paths`:
dense neighbour mask, no host syncs) is a timing-free measure of HEX's step cost:
SimCLR + HEX against SimCLR, the same whole step through the real Trainer (batch fetch,
augmentation, forward, loss, backward, LARS, probe, hooks). 130 extra ops per step
before issue 33; 58 after its first changes; 52 since HEX's backward also takes the
numerator's gradient (``with_numerator``: no gather backward over an (M, K) zero tensor);
48 since the backward's three per-anchor factors e^{x - log D} come from one stacked exp
(``relatives.backward_shares``).
One fewer is expected on CUDA, where the quantile is one ``kthvalue``; not yet counted
there.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from hexssl.run.hostsync import AtenOpCounter, sync_free_paths
from hexssl.run.train import pretrain
from tests.faults.helpers import tiny_run

HEX_OP_BUDGET = 48  # extra aten ops per step for HEX (paper variant, adaptive threshold)

STEPS = [  # 3 steps: 0 sets up lazily, 1 is counted, 2 is the run's last (logged) step
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 12, image_size: 16}",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1000",
    "trainer.checkpoint_every_n_steps=1000",
]


class CountStep1(Callback):
    """Counts step 1 whole: from the end of step 0 to its own end."""

    def __init__(self, ops: AtenOpCounter) -> None:
        self.ops = ops

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.ops.active = trainer.global_step == 1


def ops_per_step(tmp_path: Any, *extra: str) -> AtenOpCounter:
    ops = AtenOpCounter()
    ops.active = False
    cfg = tiny_run(tmp_path, "ops", "simclr", *STEPS, *extra)
    with sync_free_paths(), ops:
        pretrain(cfg, [CountStep1(ops)])
    return ops


def test_hex_adds_few_ops_to_a_training_step(tmp_path):
    plain = ops_per_step(tmp_path / "plain", "hex.enabled=false")
    hexed = ops_per_step(tmp_path / "hex", "hex.enabled=true")
    assert plain.total > 500  # the whole step was counted, not an empty window
    extra = hexed.total - plain.total
    diff = {k: hexed.ops[k] - plain.ops[k] for k in hexed.ops | plain.ops}
    shown = sorted((v, k) for k, v in diff.items() if v)
    assert 0 < extra <= HEX_OP_BUDGET, f"HEX adds {extra} ops per step: {shown}"
