"""A Vision Transformer patch encoder in plain torch with timm's ``VisionTransformer`` module layout, so the weights of a
timm-built foundation model (UNI: ``vit_large_patch16_224``, ``init_values=1e-5``, ``num_classes=0``) load with
``strict=True`` without importing timm.

Key names, as timm ``timm/models/vision_transformer.py`` builds them: ``cls_token``, ``reg_token`` (with register
tokens), ``pos_embed``, ``patch_embed.proj.{weight,bias}``, ``blocks.<i>.norm1``, ``blocks.<i>.attn.qkv``,
``blocks.<i>.attn.proj``, ``blocks.<i>.ls1.gamma`` (with ``init_values``), ``blocks.<i>.norm2``,
``blocks.<i>.mlp.fc1``, ``blocks.<i>.mlp.fc2``, ``blocks.<i>.ls2.gamma``, then ``norm`` (token pooling) or ``fc_norm``
(average pooling). The encoder's output is the pooled embedding (``forward_head(pre_logits=True)``): no classifier head.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, init_values: float | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """(B, 3, img_size, img_size) normalised images -> (B, embed_dim) embeddings. ``global_pool`` "token" takes the class
    token after ``norm``; "avg" averages the patch tokens and applies ``fc_norm`` (timm's ``norm`` is then absent)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 1024, depth: int = 24, num_heads: int = 16,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, init_values: float | None = None, reg_tokens: int = 0,
                 no_embed_class: bool = False, global_pool: str = "token") -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError("global_pool must be 'token' or 'avg'")
        if img_size % patch_size:
            raise ValueError("img_size must be a multiple of patch_size")
        self.global_pool, self.no_embed_class, self.img_size = global_pool, no_embed_class, img_size
        self.num_prefix_tokens = 1 + reg_tokens
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + (0 if no_embed_class else self.num_prefix_tokens), embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values) for _ in range(depth)])
        self.norm: nn.Module = nn.LayerNorm(embed_dim, eps=1e-6) if global_pool == "token" else nn.Identity()
        self.fc_norm: nn.Module = nn.LayerNorm(embed_dim, eps=1e-6) if global_pool == "avg" else nn.Identity()
        self.embedding_dim = embed_dim

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:  # timm: position embeddings on the patch tokens only, prefix tokens added after
            return torch.cat([*prefix, x + self.pos_embed], dim=1)
        return torch.cat([*prefix, x], dim=1) + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self._pos_embed(self.patch_embed(x))))
        pooled = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens:].mean(1)
        return self.fc_norm(pooled)
