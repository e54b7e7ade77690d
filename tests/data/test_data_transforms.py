"""Batched augmentations: presets, determinism, and each op against a direct reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hexssl.data import DATASET_STATS, PRESETS, ViewConfig, build_augmentation, build_views
from hexssl.data import transforms as T

MEAN, STD = DATASET_STATS["cifar10"]


def batch(n: int = 16, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)


def unnormalise(v: torch.Tensor) -> torch.Tensor:
    return v * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------ presets
@pytest.mark.parametrize(
    ("preset", "sizes"),
    [
        ("simclr", [32, 32]),
        ("byol", [32, 32]),
        ("barlow", [32, 32]),
        ("multicrop", [32, 32, 16, 16, 16, 16, 16, 16]),
        ("eval", [32]),
    ],
)
def test_preset_shapes_dtype_range(preset: str, sizes: list[int]) -> None:
    views = build_augmentation(preset, 32, MEAN, STD)(batch(side=40))
    assert [v.shape[-1] for v in views] == sizes
    for v in views:
        assert v.dtype == torch.float32 and v.shape[:2] == (16, 3)
        x = unnormalise(v)
        assert x.min() >= -1e-4 and x.max() <= 1 + 1e-4


def test_presets_registry_and_errors() -> None:
    assert set(PRESETS) == {"simclr", "byol", "barlow", "multicrop", "eval"}
    with pytest.raises(ValueError, match="valid: \\['barlow'"):
        build_augmentation("simclr2", 32, MEAN, STD)
    with pytest.raises(ValueError, match="unknown augmentation option 'blur'"):
        build_views("simclr", 32, blur=0.5)
    with pytest.raises(ValueError, match="gray_p is a probability"):
        build_views("simclr", 32, gray_p=1.5)


def test_defaults_follow_scale() -> None:
    small, large = build_views("simclr", 32)[0], build_views("simclr", 224)[0]
    assert (small.brightness, small.hue, small.blur_p) == (0.8, 0.2, 0.0)  # HEX_SPEC 7, CIFAR
    assert (large.brightness, large.hue, large.blur_p) == (0.4, 0.1, 0.5)  # ImageNet scale
    v1, v2 = build_views("byol", 224)
    assert (v1.blur_p, v1.solar_p, v2.blur_p, v2.solar_p) == (1.0, 0.0, 0.1, 0.2)
    assert [v.size for v in build_views("multicrop", 224, num_local=2)] == [224, 224, 96, 96]


def test_overrides_all_views_per_view_and_yaml_lists() -> None:
    views = build_views("byol", 32, solar_p=[0.5, 0.0], crop_scale=[0.2, 1.0], gray_p=0.0)
    assert [v.solar_p for v in views] == [0.5, 0.0]
    assert all(v.crop_scale == (0.2, 1.0) and v.gray_p == 0.0 for v in views)
    views = build_views("simclr", 32, crop_scale=[[0.5, 1.0], [0.1, 0.2]])
    assert [v.crop_scale for v in views] == [(0.5, 1.0), (0.1, 0.2)]
    with pytest.raises(ValueError, match="3 values for 2 views"):
        build_views("simclr", 32, flip_p=[0.1, 0.2, 0.3])


def test_deterministic_under_generator_and_manual_seed() -> None:
    aug, x = build_augmentation("simclr", 32, MEAN, STD), batch()
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(3)
    d = aug(x)
    torch.manual_seed(3)
    assert torch.equal(d[1], aug(x)[1])


def test_two_views_differ_per_image() -> None:
    v1, v2 = build_augmentation("simclr", 32, MEAN, STD)(batch(), torch.Generator().manual_seed(0))
    assert ((v1 - v2).flatten(1).abs().amax(1) > 0.1).all()


def test_asymmetric_views_get_their_own_ops() -> None:
    # Fixed geometry and no colour: view 1 is always blurred, view 2 rarely blurred/solarised.
    # sigma >= 1 px so that every blur is visible (sigma 0.1 px is an identity kernel).
    fixed = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)
    fixed["blur_sigma"] = (1.0, 2.0)
    aug = build_augmentation("byol", 96, MEAN, STD, **fixed)
    x = batch(n=200, side=96)
    ident = build_augmentation("eval", 96, MEAN, STD)(x)[0]
    v1, v2 = aug(x, torch.Generator().manual_seed(0))
    changed1 = (v1 - ident).flatten(1).abs().amax(1) > 1e-3
    changed2 = (v2 - ident).flatten(1).abs().amax(1) > 1e-3
    assert changed1.all()  # blur p = 1.0
    assert 0.15 < changed2.float().mean() < 0.45  # blur 0.1, solarise 0.2: about 28 %
    solarised = (unnormalise(v2) > 0.5 + 1e-3).flatten(1).any(1).logical_not()
    assert solarised.sum() > 10  # solarised images have no value above 0.5


def test_eval_is_centre_resize() -> None:
    x = batch(n=2, side=40)
    (v,) = build_augmentation("eval", 20, MEAN, STD)(x)
    ref = F.interpolate(
        x[..., 0:40, 0:40].float() / 255, size=(20, 20), mode="bilinear", antialias=True
    )
    assert torch.allclose(unnormalise(v), ref, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    aug, x = build_augmentation("byol", 32, MEAN, STD), batch()
    cpu = aug(x, torch.Generator().manual_seed(1))
    gpu = aug.cuda()(x.cuda(), torch.Generator().manual_seed(1))
    assert all(
        g.device.type == "cuda" and torch.allclose(c, g.cpu(), atol=1e-3) for c, g in zip(cpu, gpu)
    )


# --------------------------------------------------------------------- individual ops
def test_crop_boxes_valid_and_in_scale_range() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = T.sample_crop_boxes(500, 30, 40, (0.08, 1.0), (3 / 4, 4 / 3), g, torch.device("cpu"))
    x0, y0, w, h = boxes.unbind(1)
    assert (
        (x0 >= 0).all()
        and (y0 >= 0).all()
        and (x0 + w <= 40 + 1e-4).all()
        and (y0 + h <= 30 + 1e-4).all()
    )
    area = w * h / (30 * 40)
    assert area.min() >= 0.08 - 1e-4 and area.max() <= 1 + 1e-4
    assert ((w / h) >= 3 / 4 - 1e-4).all() and ((w / h) <= 4 / 3 + 1e-4).all()
    assert area.std() > 0.1  # actually random per sample


def test_crop_fallback_when_ratio_impossible() -> None:
    boxes = T.sample_crop_boxes(4, 10, 100, (0.9, 1.0), (1.0, 1.0), None, torch.device("cpu"))
    assert torch.allclose(boxes[:, 2:], torch.tensor([[10.0, 10.0]] * 4))  # square, full height


def test_crop_identity_flip_and_zoom() -> None:
    x = torch.rand(2, 3, 16, 16)
    full = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2)
    no, yes = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    assert torch.allclose(T.crop_flip_resize(x, full, no, 16), x, atol=1e-5)
    assert torch.allclose(T.crop_flip_resize(x, full, yes, 16), x.flip(-1), atol=1e-5)
    quad = torch.tensor([[4.0, 4.0, 8.0, 8.0]] * 2)  # 2x zoom of the centre
    ref = F.interpolate(x[..., 4:12, 4:12], size=16, mode="bilinear", align_corners=False)
    assert torch.allclose(
        T.crop_flip_resize(x, quad, no, 16)[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5
    )


def test_colour_ops_against_definitions() -> None:
    x = torch.rand(4, 3, 8, 8)
    f = torch.tensor([0.5, 1.0, 1.5, 0.0])
    gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # (B, H, W)
    assert torch.allclose(T.grayscale(x)[:, 0], gray, atol=1e-6)
    assert torch.allclose(T.adjust_brightness(x, f), (x * f.view(-1, 1, 1, 1)).clamp(0, 1))
    m = gray.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    assert torch.allclose(
        T.adjust_contrast(x, f), (m + f.view(-1, 1, 1, 1) * (x - m)).clamp(0, 1), atol=1e-6
    )
    g = gray.unsqueeze(1)
    assert torch.allclose(
        T.adjust_saturation(x, f), (g + f.view(-1, 1, 1, 1) * (x - g)).clamp(0, 1), atol=1e-6
    )
    assert torch.allclose(T.adjust_hue(x, torch.zeros(4)), x, atol=1e-5)
    assert torch.allclose(T.adjust_hue(x, torch.ones(4)), x, atol=1e-5)  # a full turn


def test_hue_rotation_keeps_luma_and_cycles_primaries() -> None:
    x = torch.full((1, 3, 2, 2), 0.5)
    x[:, 0] = 0.6  # a mild red: stays in gamut after rotation
    y = T.adjust_hue(x, torch.tensor([1 / 3]))
    assert torch.allclose(T.grayscale(y), T.grayscale(x), atol=1e-5)
    assert y[0, :, 0, 0].argmax() != 0  # no longer red


def test_blur_keeps_constants_and_smooths() -> None:
    flat = torch.full((2, 3, 16, 16), 0.3)
    sigma = torch.tensor([0.5, 2.0])
    assert torch.allclose(T.gaussian_blur(flat, sigma), flat, atol=1e-6)
    x = torch.rand(2, 3, 16, 16)
    y = T.gaussian_blur(x, sigma)
    assert y.std() < x.std() and y[1].std() < y[0].std()
    k = torch.exp(-(torch.arange(-1.0, 2.0) ** 2) / 2)  # sigma 1, radius 1 at 16 px
    k = k / k.sum()
    ref = F.conv2d(
        F.pad(x[:1], (1, 1, 1, 1), mode="reflect"),
        (k[:, None] * k[None]).expand(3, 1, 3, 3),
        groups=3,
    )
    assert torch.allclose(T.gaussian_blur(x[:1], torch.tensor([1.0])), ref, atol=1e-6)


def test_solarize_and_grayscale_probability_one() -> None:
    x = torch.rand(3, 3, 4, 4)
    assert torch.allclose(T.random_solarize(x, 1.0, None), torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(T.random_solarize(x, 0.0, None), x)
    g = T.random_grayscale(x, 1.0, None)
    assert torch.allclose(g[:, 0], g[:, 2]) and torch.allclose(g[:, :1], T.grayscale(x))


def test_jitter_off_is_identity() -> None:
    x = torch.rand(4, 3, 8, 8)
    cfg = ViewConfig(8, jitter_p=0.0, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
    assert torch.allclose(T.colour_jitter(x, cfg, None), x, atol=1e-5)


def test_compute_stats() -> None:
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 1] = 255
    mean, std = T.compute_stats(images)
    assert mean == pytest.approx((0.0, 1.0, 0.0)) and std == pytest.approx((0.0, 0.0, 0.0))
    assert math.isclose(DATASET_STATS["imagenet"][0][0], 0.485)


def test_precropped_views_are_only_resized_not_cropped_again() -> None:
    """A (B, V, 3, H, W) batch holds one decode-time crop per view: no second crop."""
    quiet = dict(jitter_p=0.0, gray_p=0.0, blur_p=0.0, solar_p=0.0, flip_p=0.0)
    aug = build_augmentation("simclr", 16, (0.0,) * 3, (1.0,) * 3, **quiet)
    pre = torch.randint(0, 256, (3, 2, 3, 16, 16), dtype=torch.uint8)
    views = aug(pre, generator=torch.Generator().manual_seed(0))
    for i, view in enumerate(views):
        torch.testing.assert_close(view, pre[:, i].float() / 255, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, 2, 3, H, W\)"):
        aug(torch.zeros(3, 4, 3, 16, 16, dtype=torch.uint8))  # 4 pre-crops for 2 views
