"""hexssl: self-supervised representation learning with HEX (arXiv:2410.23200)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__version__ = "0.1.0"


def load_backbone(path: str | Path, checkpoint: str = "last") -> tuple[nn.Module, nn.Module]:
    """A trained backbone and its eval transform, for evaluation in your own code.

    ``path`` is released weights (``WEIGHTS.safetensors`` with ``WEIGHTS.json`` beside
    it, a folder from ``hexssl export --format hf``, or an old ``WEIGHTS.pt``) or a run
    directory (``checkpoint``: ``last``, ``previous`` or a ``.ckpt`` file). The
    transform maps uint8 images (B, 3, H, W) to the normalised float input the backbone
    was trained on; the backbone, in eval mode on the CPU, maps that to (B, D) features.
    See :func:`hexssl.run.eval_jobs.load_backbone`.

    Example:
        >>> import hexssl, torch  # doctest: +SKIP
        >>> net, transform = hexssl.load_backbone("weights/simclr-s0.safetensors")  # doctest: +SKIP
        >>> with torch.no_grad():  # doctest: +SKIP
        ...     feats = net(transform(images_uint8))  # (B, D)
    """
    from hexssl.run.eval_jobs import load_backbone as load  # torch and lightning load only now

    return load(path, checkpoint)
