"""Released fp16 weights: tensors float16 cannot hold stay float32, broken files are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hexssl.backbones import build_backbone
from hexssl.cli import main
from hexssl.export import FP16_MAX, export_release, load_release, release_tensor

KWARGS = {"stem": "cifar", "width": 4}


def _net_with_a_huge_running_var() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_backbone("resnet18", **KWARGS)
    net.layer1[0].bn1.running_var.fill_(7e5)  # as Barlow Twins' runs reach: > 65504
    return net.eval()


def test_overflowing_buffers_stay_float32_and_the_outputs_match(tmp_path: Path) -> None:
    net = _net_with_a_huge_running_var()
    path = export_release(net, tmp_path / "w.safetensors", "resnet18", KWARGS, 16, [0.5] * 3,
                          [0.25] * 3)  # fmt: skip
    state = load_file(path)
    assert state["layer1.0.bn1.running_var"].dtype == torch.float32
    assert state["layer1.0.bn1.weight"].dtype == torch.float16  # the rest stays small
    loaded, _ = load_release(path)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        out, ref = loaded(x), net(x)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, rtol=0.02, atol=0.02)  # fp16 rounding of the weights


def test_release_tensor_rules() -> None:
    assert release_tensor("a", torch.tensor([1.0, FP16_MAX])).dtype == torch.float16
    assert release_tensor("b", torch.tensor([1.0, 2 * FP16_MAX])).dtype == torch.float32
    assert release_tensor("n", torch.tensor([3])).dtype == torch.int64
    with pytest.raises(ValueError, match="non-finite"):
        release_tensor("c", torch.tensor([float("nan")]))


def test_an_old_release_with_inf_is_refused_with_the_fix(tmp_path: Path) -> None:
    net = _net_with_a_huge_running_var()
    export_release(net, tmp_path / "w.safetensors", "resnet18", KWARGS, 16, [0.5] * 3, [0.25] * 3)
    path = tmp_path / "w.pt"  # an old pickled release, beside the same w.json
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save(state, path)  # what the export did before: running_var -> inf
    with pytest.raises(ValueError, match="export the run again"):
        load_release(path)
    assert main(["knn", str(path)]) == 2  # one error line, no traceback
