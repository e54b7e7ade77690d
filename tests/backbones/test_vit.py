"""ViT backbones: timm naming/shapes, output shapes per patch size, attention oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hexssl.backbones import build_backbone
from hexssl.backbones.vit import Attention, VisionTransformer

Shape = tuple[int, ...]


def _timm_block(i: int, d: int) -> list[tuple[str, Shape]]:
    """timm ``blocks.{i}`` state_dict entries (qkv_bias=True, mlp_ratio=4, no layer scale)."""
    p = f"blocks.{i}"
    return [
        (f"{p}.norm1.weight", (d,)),
        (f"{p}.norm1.bias", (d,)),
        (f"{p}.attn.qkv.weight", (3 * d, d)),
        (f"{p}.attn.qkv.bias", (3 * d,)),
        (f"{p}.attn.proj.weight", (d, d)),
        (f"{p}.attn.proj.bias", (d,)),
        (f"{p}.norm2.weight", (d,)),
        (f"{p}.norm2.bias", (d,)),
        (f"{p}.mlp.fc1.weight", (4 * d, d)),
        (f"{p}.mlp.fc1.bias", (4 * d,)),
        (f"{p}.mlp.fc2.weight", (d, 4 * d)),
        (f"{p}.mlp.fc2.bias", (d,)),
    ]


def _timm_vit(d: int, depth: int, patch: int, tokens: int) -> dict[str, Shape]:
    """timm VisionTransformer(num_classes=0).state_dict() layout: the head is Identity."""
    out = [
        ("cls_token", (1, 1, d)),
        ("pos_embed", (1, tokens, d)),
        ("patch_embed.proj.weight", (d, 3, patch, patch)),
        ("patch_embed.proj.bias", (d,)),
    ]
    for i in range(depth):
        out += _timm_block(i, d)
    return dict([*out, ("norm.weight", (d,)), ("norm.bias", (d,))])


def _on_meta(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return build_backbone(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "dim", "timm_params", "head_params"),
    # timm vit_tiny_patch16_224 / vit_small_patch16_224 parameter counts with a 1000-way head.
    [("vit_tiny", 192, 5_717_416, 192 * 1000 + 1000), ("vit_small", 384, 22_050_664, 385_000)],
)
def test_matches_timm_layout_at_224(
    name: str, dim: int, timm_params: int, head_params: int
) -> None:
    model = _on_meta(name)
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(layout) == 4 + 12 * 12 + 2
    assert layout == _timm_vit(dim, 12, 16, 14 * 14 + 1)
    assert sum(p.numel() for p in model.parameters()) == timm_params - head_params
    assert model.num_features == dim


def test_small_images_change_only_patch_and_pos_shapes() -> None:
    layout = {
        k: tuple(v.shape)
        for k, v in _on_meta("vit_small", img_size=32, patch_size=4).state_dict().items()
    }
    assert layout == _timm_vit(384, 12, 4, 8 * 8 + 1)


@pytest.mark.parametrize(
    ("name", "size", "patch", "dim"),
    [
        ("vit_tiny", 32, 4, 192),
        ("vit_tiny", 64, 8, 192),
        ("vit_tiny", 224, 16, 192),
    ],
)
def test_output_shape(name: str, size: int, patch: int, dim: int) -> None:
    model = build_backbone(name, img_size=size, patch_size=patch)
    assert model.num_features == dim
    assert model(torch.randn(2, 3, size, size)).shape == (2, dim)


def _tiny_vit(img_size: int = 16, patch_size: int = 4) -> VisionTransformer:
    return VisionTransformer(img_size, patch_size, embed_dim=24, depth=2, num_heads=3)


def test_output_is_layer_normed_cls_token() -> None:
    model = _tiny_vit()
    with torch.no_grad():
        model.norm.weight.fill_(1.0)
        out = model(torch.randn(3, 3, 16, 16))  # (3, 24)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)
    # var(x) / (var(x) + eps) with eps=1e-6: close to, not exactly, one.
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(3), atol=1e-2, rtol=0)


def test_attention_matches_naive_softmax_attention() -> None:
    torch.manual_seed(0)
    B, N, D, H = 2, 5, 12, 3
    attn, x = Attention(D, H), torch.randn(B, N, D)
    q, k, v = attn.qkv(x).split(D, dim=-1)  # timm layout: rows [q; k; v], heads contiguous
    q, k, v = (t.reshape(B, N, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, N, d)
    weights = F.softmax(q @ k.transpose(-1, -2) / (D // H) ** 0.5, dim=-1)  # (B, H, N, N)
    naive = attn.proj((weights @ v).transpose(1, 2).reshape(B, N, D))
    torch.testing.assert_close(attn(x), naive, atol=1e-5, rtol=1e-5)


def test_pos_embed_is_resized_for_other_input_sizes() -> None:
    model = _tiny_vit(img_size=16, patch_size=4)
    assert model(torch.randn(2, 3, 8, 12)).shape == (2, 24)
    with pytest.raises(ValueError, match="10x16"):
        model(torch.randn(1, 3, 10, 16))


def test_resized_pos_embed_keeps_cls_slot() -> None:
    model = _tiny_vit(img_size=16, patch_size=4)
    assert model._pos_embed_for(4, 4) is model.pos_embed  # training grid: no resize
    resized = model._pos_embed_for(2, 3)  # (1, 1 + 6, D)
    assert resized.shape == (1, 7, 24)
    torch.testing.assert_close(resized[:, 0], model.pos_embed[:, 0])


def test_gradients_reach_every_parameter() -> None:
    model = _tiny_vit()
    model(torch.randn(2, 3, 16, 16)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
