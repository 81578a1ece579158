"""TransMIL (Shao et al. 2021) as szc19990412/TransMIL ``models/TransMIL.py`` builds it, with its Nyström attention
written in plain torch under the ``nystrom_attention`` package's parameter names (lucidrains/nystrom-attention
``nystrom_attention/nystrom_attention.py``), so a lab's checkpoint loads with ``strict=True``.

Keys: ``pos_layer.proj{,1,2}.{weight,bias}``, ``_fc1.0.{weight,bias}``, ``cls_token``, ``layer{1,2}.norm.{weight,bias}``,
``layer{1,2}.attn.to_qkv.weight``, ``layer{1,2}.attn.to_out.0.{weight,bias}``, ``layer{1,2}.attn.res_conv.weight``,
``norm.{weight,bias}``, ``_fc2.{weight,bias}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def moore_penrose_iter_pinv(x: torch.Tensor, iters: int = 6) -> torch.Tensor:
    """Iterative pseudo-inverse (Razavi et al.), as ``nystrom_attention``: z0 = x^T / (max row sum * max column sum),
    z <- z (13 I - x z (15 I - x z (7 I - x z))) / 4."""
    abs_x = x.abs()
    z = x.transpose(-1, -2) / (abs_x.sum(dim=-1).max() * abs_x.sum(dim=-2).max())
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iters):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - (xz @ (15 * eye - (xz @ (7 * eye - xz)))))
    return z


class NystromAttention(nn.Module):
    """Nyström self-attention (Xiong et al. 2021): softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V with m
    landmarks Q~, K~ = means of consecutive groups of queries and keys; the sequence is zero-padded at the front to a
    multiple of m; plus a depth-wise convolution of V over the sequence (``residual``)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, num_landmarks: int = 256, pinv_iterations: int = 6,
                 residual: bool = True, residual_conv_kernel: int = 33, eps: float = 1e-8, dropout: float = 0.0) -> None:
        super().__init__()
        self.eps, self.num_landmarks, self.pinv_iterations, self.heads = eps, num_landmarks, pinv_iterations, heads
        self.scale = dim_head ** -0.5
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.residual = residual
        if residual:
            pad = residual_conv_kernel // 2
            self.res_conv = nn.Conv2d(heads, heads, (residual_conv_kernel, 1), padding=(pad, 0), groups=heads, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, m = self.heads, self.num_landmarks
        if n % m:
            x = F.pad(x, (0, 0, m - n % m, 0), value=0.0)
        q, k, v = (t.reshape(b, t.shape[1], h, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))  # b h n d
        q = q * self.scale
        group = math.ceil(n / m)
        q_land = q.reshape(b, h, -1, group, q.shape[-1]).sum(dim=3) / group
        k_land = k.reshape(b, h, -1, group, k.shape[-1]).sum(dim=3) / group
        attn1 = (q @ k_land.transpose(-1, -2)).softmax(dim=-1)
        attn2 = (q_land @ k_land.transpose(-1, -2)).softmax(dim=-1)
        attn3 = (q_land @ k.transpose(-1, -2)).softmax(dim=-1)
        out = (attn1 @ moore_penrose_iter_pinv(attn2, self.pinv_iterations)) @ (attn3 @ v)
        if self.residual:
            out = out + self.res_conv(v)
        out = out.transpose(1, 2).reshape(b, out.shape[2], -1)
        return self.to_out(out)[:, -n:]


class TransLayer(nn.Module):
    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(dim=dim, dim_head=dim // 8, heads=8, num_landmarks=dim // 2, pinv_iterations=6,
                                     residual=True, dropout=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class PPEG(nn.Module):
    """Pyramid position encoding: depth-wise 7x7, 5x5 and 3x3 convolutions over the patch tokens laid on a square."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 7, 1, 7 // 2, groups=dim)
        self.proj1 = nn.Conv2d(dim, dim, 5, 1, 5 // 2, groups=dim)
        self.proj2 = nn.Conv2d(dim, dim, 3, 1, 3 // 2, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, _, c = x.shape
        cls_token, feat = x[:, 0], x[:, 1:]
        grid = feat.transpose(1, 2).reshape(b, c, height, width)
        x = self.proj(grid) + grid + self.proj1(grid) + self.proj2(grid)
        return torch.cat((cls_token.unsqueeze(1), x.flatten(2).transpose(1, 2)), dim=1)


class TransMIL(nn.Module):
    """The reference hard-codes 1024-dim input features; ``in_dim`` lets other encoders' features in (keys unchanged)."""

    def __init__(self, n_classes: int = 2, in_dim: int = 1024) -> None:
        super().__init__()
        self.pos_layer = PPEG(dim=512)
        self._fc1 = nn.Sequential(nn.Linear(in_dim, 512), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, 512))
        self.n_classes = n_classes
        self.layer1 = TransLayer(dim=512)
        self.layer2 = TransLayer(dim=512)
        self.norm = nn.LayerNorm(512)
        self._fc2 = nn.Linear(512, n_classes)

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> logits (C,). The bag is padded to a square by repeating its first patches, as the reference does."""
        h = self._fc1(bag.float().unsqueeze(0))
        n = h.shape[1]
        side = math.ceil(math.sqrt(n))
        h = torch.cat([h, h[:, : side * side - n, :]], dim=1)
        h = torch.cat((self.cls_token.expand(1, -1, -1).to(h.device), h), dim=1)
        h = self.layer1(h)
        h = self.pos_layer(h, side, side)
        h = self.layer2(h)
        return self._fc2(self.norm(h)[:, 0])[0]
