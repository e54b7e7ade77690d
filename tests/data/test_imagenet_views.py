"""Lazy ImageNet views are independent random-resized crops of the whole image.

Reference: two independent draws of the library's own random-resized-crop sampler on the
whole image (torchvision's rule, scale (0.08, 1)). On a 500 x 375 image that gives a
mean IoU of about 0.38, 9 % of pairs with IoU < 0.1 and a mean view area of about 0.43
of the image; a shared decode-time pre-crop raised the IoU to 0.59 and left no pair below
0.1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hexssl.config import load_config
from hexssl.data.imagenet import LazyImageFolder
from hexssl.data.transforms import sample_crop_boxes
from hexssl.run.build import build_datamodule, build_method

W, H, DRAWS = 500, 375, 20_000


def pair_stats(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean IoU, share of pairs with IoU < 0.1 and mean area of (x0, y0, x1, y1) boxes.

    Shape:
        a, b: (N, 4) in pixels
    """
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (N,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = iw * ih / (area_a + area_b - iw * ih)
    area = torch.cat([area_a, area_b]) / (W * H)
    return {"iou": float(iou.mean()), "low": float((iou < 0.1).float().mean()),
            "area": float(area.mean())}  # fmt: skip


def independent_reference() -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    boxes = [sample_crop_boxes(DRAWS, H, W, (0.08, 1.0), (3 / 4, 4 / 3), gen, torch.device("cpu"))
             for _ in range(2)]  # fmt: skip
    a, b = (torch.cat([x[:, :2], x[:, :2] + x[:, 2:]], dim=1) for x in boxes)  # (x0,y0,x1,y1)
    return pair_stats(a, b)


def test_view_boxes_match_independent_crops_within_2_percent() -> None:
    ds = LazyImageFolder(["unused.jpg"], [0], ["c"], image_size=224, train=True)
    torch.manual_seed(0)
    pairs = torch.tensor([ds.boxes(W, H) for _ in range(DRAWS)])  # (N, 2, 4)
    ours, ref = pair_stats(pairs[:, 0], pairs[:, 1]), independent_reference()
    assert ref["iou"] == pytest.approx(0.384, abs=0.01)  # the measurement
    assert ours["iou"] == pytest.approx(ref["iou"], rel=0.02)
    assert ours["area"] == pytest.approx(ref["area"], rel=0.02)
    assert ours["low"] == pytest.approx(ref["low"], abs=0.02)


def coordinate_image(path: Path) -> None:
    """Red encodes x and green encodes y, so a view's pixels reveal its source box."""
    x = np.linspace(0, 255, W)[None, :].repeat(H, 0)
    y = np.linspace(0, 255, H)[:, None].repeat(W, 1)
    rgb = np.stack([x, y, np.full_like(x, 128)], axis=2).round().astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=95)


def test_training_views_are_the_decode_time_crops_of_the_whole_image(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        (root / split / "n001").mkdir(parents=True)
        coordinate_image(root / split / "n001" / "a.JPEG")
    quiet = "{jitter_p: 0.0, gray_p: 0.0, blur_p: 0.0, solar_p: 0.0, flip_p: 0.0}"
    data = ["data.dataset=imagenet", f"data.root={root}", "data.image_size=64"]
    cfg = load_config(None, [*data, "data.options={image_size: 64}", f"data.aug_overrides={quiet}"])
    dm = build_datamodule(cfg)
    dm.setup()
    ds = dm.train_set
    assert isinstance(ds, LazyImageFolder) and len(ds.crops) == 2
    mean_std = (0.0,) * 3, (1.0,) * 3
    dm._stats = mean_std  # views in [0, 1]: colours read back directly
    method = build_method(cfg, dm)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = ds.boxes(W, H)
        torch.manual_seed(seed)
        images = ds[0][0][None]  # (1, 2, 3, 64, 64)
        views = method.augment(images, generator=torch.Generator().manual_seed(seed))
        for view, (x0, y0, x1, y1) in zip(views, expected):
            red, green = view[0, 0] * W, view[0, 1] * H  # back to pixel coordinates
            tol = 0.03 * W
            assert float(red.min()) == pytest.approx(x0, abs=tol)
            assert float(red.max()) == pytest.approx(x1, abs=tol)
            assert float(green.min()) == pytest.approx(y0, abs=0.03 * H)
            assert float(green.max()) == pytest.approx(y1, abs=0.03 * H)
