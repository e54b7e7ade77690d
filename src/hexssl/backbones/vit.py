"""Vision Transformers (ViT-Tiny / ViT-Small) returning the normalised class token.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (arXiv:2010.11929); Tiny/Small sizes
from DeiT (Touvron et al., arXiv:2012.12877 table 1). Parameter names and shapes match
``timm.models.vision_transformer.VisionTransformer`` with ``num_classes=0``
(``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}``, ``norm``), and the numerics follow timm's defaults (LayerNorm
eps 1e-6, qkv bias, exact GELU, MLP ratio 4), so an exported state_dict loads into
``timm.create_model("vit_small_patch16_224", num_classes=0, img_size=..., patch_size=...)``
with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6  # timm's ViT LayerNorm eps
MLP_RATIO = 4
# timm architecture names for our presets; ``VisionTransformer.timm_kwargs`` adapts them.
TIMM_NAMES: dict[str, str] = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
}


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches linearly embedded by a strided conv.

    Shape:
        (B, 3, H, W) -> (B, H * W / patch_size**2, embed_dim)
    """

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``.

    The fused ``qkv`` weight is laid out as timm's: rows ``[q; k; v]``, each split into
    ``num_heads`` contiguous chunks of ``embed_dim / num_heads``.

    Shape:
        (B, N, D) -> (B, N, D)
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, heads, N, D / heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D / heads)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    """Position-wise ``fc1 -> GELU -> fc2`` with hidden size ``MLP_RATIO * dim``.

    Shape:
        (B, N, D) -> (B, N, D)
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, MLP_RATIO * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(MLP_RATIO * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Shape:
        (B, N, D) -> (B, N, D)
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _check_args(img_size: int, patch_size: int, embed_dim: int, num_heads: int) -> None:
    for name, value in (("img_size", img_size), ("patch_size", patch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if img_size % patch_size:
        raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")


class VisionTransformer(nn.Module):
    """ViT with a class token and learned position embeddings; returns ``norm(x)[:, 0]``.

    Inputs whose size differs from ``img_size`` (e.g. multi-crop) get the position
    embedding grid bicubically resized, as in DINO (arXiv:2104.14294,
    ``interpolate_pos_encoding``). Height and width must be multiples of ``patch_size``.

    Args:
        img_size: training image side; fixes the ``pos_embed`` grid.
        patch_size: patch side, e.g. 4 for 32 px, 8 for 64 px, 16 for 224 px images.
        embed_dim: token width D (192 Tiny, 384 Small).
        depth: number of blocks.
        num_heads: attention heads; must divide ``embed_dim``.

    Shape:
        (B, 3, H, W) -> (B, embed_dim)

    Example:
        >>> vit = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=2,
        ...                         num_heads=3)
        >>> vit(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 192])
    """

    def __init__(
        self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int
    ) -> None:
        super().__init__()
        _check_args(img_size, patch_size, embed_dim, num_heads)
        self.img_size, self.patch_size = img_size, patch_size
        self.depth, self.num_heads = depth, num_heads
        self.num_features: int = embed_dim
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid**2 + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self._init_weights()

    def timm_kwargs(self) -> dict[str, int]:
        """``timm.create_model`` kwargs that rebuild this architecture (see ``TIMM_NAMES``)."""
        return {
            "num_classes": 0,
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "embed_dim": self.num_features,
            "depth": self.depth,
            "num_heads": self.num_heads,
        }

    def _init_weights(self) -> None:
        """timm's default ViT init: truncated-normal(0.02) linears and pos_embed."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _pos_embed_for(self, h: int, w: int) -> Tensor:
        """Position embeddings for an ``h x w`` patch grid, resized from the trained one."""
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed  # (1, 1 + N, D)
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        D = patch_pos.shape[-1]
        grid = patch_pos.reshape(1, self.grid, self.grid, D).permute(0, 3, 1, 2)  # (1, D, g, g)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid.flatten(2).transpose(1, 2)], dim=1)  # (1, 1 + h*w, D)

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(
                f"input size {H}x{W} is not a multiple of patch_size={self.patch_size}"
            )
        tokens = self.patch_embed(x)  # (B, N, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        tokens = torch.cat([cls, tokens], dim=1)  # (B, 1 + N, D)
        tokens = tokens + self._pos_embed_for(H // self.patch_size, W // self.patch_size)
        return self.norm(self.blocks(tokens))[:, 0]  # (B, D)


def vit_tiny(*, img_size: int = 224, patch_size: int = 16) -> VisionTransformer:
    """ViT-Tiny (DeiT-Ti): D=192, depth 12, 3 heads; timm ``vit_tiny_patch16_224``.

    Shape:
        (B, 3, img_size, img_size) -> (B, 192)
    """
    return VisionTransformer(img_size, patch_size, embed_dim=192, depth=12, num_heads=3)


def vit_small(*, img_size: int = 224, patch_size: int = 16) -> VisionTransformer:
    """ViT-Small (DeiT-S): D=384, depth 12, 6 heads; timm ``vit_small_patch16_224``.

    Shape:
        (B, 3, img_size, img_size) -> (B, 384)
    """
    return VisionTransformer(img_size, patch_size, embed_dim=384, depth=12, num_heads=6)
